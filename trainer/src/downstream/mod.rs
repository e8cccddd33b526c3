//! The stages after pre-training: [`distill`] (a student trained towards a teacher's logits),
//! [`quant`] (int4 rounding and quantization-aware training with self-distillation) and [`merge`]
//! (the parameter average of specialists).

pub mod distill;
pub mod merge;
pub mod quant;
