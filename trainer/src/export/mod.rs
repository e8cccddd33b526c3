//! Models for runtimes outside mixlab: [`gguf`] (llama.cpp's format, int4 as Q4_0) and [`hf`]
//! (Hugging Face safetensors and config), both over [`named`] parameters in PyTorch's layout.

pub mod gguf;
pub mod hf;
pub mod named;
