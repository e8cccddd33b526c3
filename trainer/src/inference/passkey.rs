//! Passkey retrieval (Mohtashami & Jaggi 2023): a random number hidden at some depth of filler
//! text, asked for at the end. The long-context test of context extension.
//!
//! A task is text: an instruction, filler sentences drawn from a fixed pool, the key sentence
//! somewhere among them, and the question `What is the pass key? The pass key is`; the answer is
//! ` <key>`. The same text makes training documents ([`PasskeyTask::document`]) and evaluation
//! prompts ([`prompts`]), so a model trained on short documents is tested on the very format at a
//! longer context. Every piece starts with a space, so a byte-level BPE tokenizes the pieces one
//! by one exactly as it tokenizes the whole text, and a prompt can be cut to a token budget.
//!
//! A prompt counts as retrieved when the model's argmax at every answer position is the answer's
//! token: greedy decoding would then write the key (teacher forcing equals greedy decoding as long
//! as every prediction is right). The answer's loss (mean nats per answer token) measures
//! retrieval below that threshold: a model that cannot see the key pays about ln 10 per digit.

use std::ops::RangeInclusive;

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::inference::Inference;

/// The instruction every task starts with.
pub const INSTRUCTION: &str = "Find the pass key in this text and remember it.";

/// The filler sentences (each with its leading space), drawn at random.
pub const FILLER: [&str; 12] = [
    " The grass is green.",
    " The sky is blue.",
    " The sun is yellow.",
    " Here we go.",
    " There and back again.",
    " The river flows to the sea.",
    " Birds sing in the morning.",
    " The road is long and quiet.",
    " Clouds drift over the hills.",
    " The night is dark and calm.",
    " Leaves fall in the autumn.",
    " The wind moves the trees.",
];

/// The question that ends every task; the answer follows it.
pub const QUESTION: &str = " What is the pass key? The pass key is";

/// One passkey task: the key, and the filler sentences before and after it (indices into
/// [`FILLER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyTask {
    /// The five-digit key.
    pub key: u32,
    /// Filler before the key sentence.
    pub before: Vec<usize>,
    /// Filler between the key sentence and the question.
    pub after: Vec<usize>,
}

impl PasskeyTask {
    /// A task with a random key and `filler` random sentences, the key sentence after
    /// `round(depth · filler)` of them (depth 0: right after the instruction; 1: right before
    /// the question).
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::inference::passkey::PasskeyTask;
    /// use rand::SeedableRng;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let task = PasskeyTask::random(&mut rng, 4, 0.5);
    /// assert_eq!((task.before.len(), task.after.len()), (2, 2));
    /// assert!(task.document().ends_with(&format!("The pass key is {}.", task.key)));
    /// ```
    pub fn random(rng: &mut impl Rng, filler: usize, depth: f64) -> Self {
        let key = rng.random_range(10_000..100_000);
        let mut sentences: Vec<usize> = (0..filler)
            .map(|_| rng.random_range(0..FILLER.len()))
            .collect();
        let at = (depth.clamp(0.0, 1.0) * filler as f64).round() as usize;
        let after = sentences.split_off(at);
        Self {
            key,
            before: sentences,
            after,
        }
    }

    /// The task's pieces of text in order, the answer last; their concatenation is the document.
    pub fn pieces(&self) -> Vec<String> {
        let key = self.key;
        let mut pieces = vec![INSTRUCTION.to_owned()];
        pieces.extend(self.before.iter().map(|&i| FILLER[i].to_owned()));
        pieces.push(format!(
            " The pass key is {key}. Remember it. {key} is the pass key."
        ));
        pieces.extend(self.after.iter().map(|&i| FILLER[i].to_owned()));
        pieces.push(QUESTION.to_owned());
        pieces.push(format!(" {key}."));
        pieces
    }

    /// The task as one training document, answer included.
    pub fn document(&self) -> String {
        self.pieces().concat()
    }
}

/// `count` training documents (answers included), each with a filler count drawn uniformly from
/// `filler` and the key at a uniformly drawn depth, seeded by `seed`.
///
/// # Example
/// ```
/// use mixlab_trainer::inference::passkey::documents;
/// let docs = documents(3, 0..=2, 9);
/// assert_eq!(docs.len(), 3);
/// assert_eq!(docs, documents(3, 0..=2, 9));
/// assert!(docs.iter().all(|d| d.contains("The pass key is")));
/// ```
pub fn documents(count: usize, filler: RangeInclusive<usize>, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let sentences = rng.random_range(filler.clone());
            let depth = rng.random::<f64>();
            PasskeyTask::random(&mut rng, sentences, depth).document()
        })
        .collect()
}

/// A tokenized task: `tokens` ends with the answer, which starts at `answer_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct PasskeyPrompt {
    /// Where the key sentence lies, as a fraction of the filler before it.
    pub depth: f64,
    /// Document start (end-of-text, as packing puts before every document), task and answer.
    pub tokens: Vec<u32>,
    /// Index of the answer's first token in `tokens`.
    pub answer_start: usize,
}

/// `trials` prompts for each depth, each as long as fits in `context` tokens with whole filler
/// sentences, seeded by `seed`. `tokenize` must be the model's tokenizer; `eos` its end-of-text.
///
/// # Errors
/// The tokenizer's error, or a message when not even a task without filler fits `context`.
pub fn prompts<E: From<String>>(
    context: usize,
    depths: &[f64],
    trials: usize,
    seed: u64,
    eos: u32,
    mut tokenize: impl FnMut(&str) -> Result<Vec<u32>, E>,
) -> Result<Vec<PasskeyPrompt>, E> {
    let filler: Vec<Vec<u32>> = FILLER
        .iter()
        .map(|s| tokenize(s))
        .collect::<Result<_, E>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(depths.len() * trials);
    for &depth in depths {
        for _ in 0..trials {
            // The key and the fixed pieces first, then as much filler as the budget allows.
            let bare = PasskeyTask::random(&mut rng, 0, depth);
            let fixed: usize = 1 + bare
                .pieces()
                .iter()
                .map(|p| tokenize(p).map(|t| t.len()))
                .sum::<Result<usize, E>>()?;
            if fixed > context {
                return Err(E::from(format!(
                    "passkey: a task without filler takes {fixed} tokens, more than the context of {context}"
                )));
            }
            let mut sentences = Vec::new();
            let mut used = fixed;
            loop {
                let next = rng.random_range(0..FILLER.len());
                if used + filler[next].len() > context {
                    break;
                }
                used += filler[next].len();
                sentences.push(next);
            }
            let at = (depth.clamp(0.0, 1.0) * sentences.len() as f64).round() as usize;
            let after = sentences.split_off(at);
            let task = PasskeyTask {
                key: bare.key,
                before: sentences,
                after,
            };
            out.push(tokenized(&task, depth, eos, &mut tokenize)?);
        }
    }
    Ok(out)
}

/// Tokenizes a task piece by piece, after an end-of-text token.
fn tokenized<E>(
    task: &PasskeyTask,
    depth: f64,
    eos: u32,
    tokenize: &mut impl FnMut(&str) -> Result<Vec<u32>, E>,
) -> Result<PasskeyPrompt, E> {
    let pieces = task.pieces();
    let (answer, prompt) = pieces.split_last().expect("a task has pieces");
    let mut tokens = vec![eos];
    for piece in prompt {
        tokens.extend(tokenize(piece)?);
    }
    let answer_start = tokens.len();
    tokens.extend(tokenize(answer.trim_end_matches('.'))?);
    Ok(PasskeyPrompt {
        depth,
        tokens,
        answer_start,
    })
}

/// Whether the argmax predictions (`predicted[i]`: the most likely token after `tokens[..=i]`)
/// spell the prompt's answer.
///
/// # Example
/// ```
/// use mixlab_trainer::inference::passkey::{PasskeyPrompt, spells_answer};
/// let prompt = PasskeyPrompt { depth: 0.0, tokens: vec![0, 5, 6, 7, 8], answer_start: 3 };
/// assert!(spells_answer(&prompt, &[9, 9, 7, 8, 9]));
/// assert!(!spells_answer(&prompt, &[9, 9, 7, 1, 9]));
/// ```
pub fn spells_answer(prompt: &PasskeyPrompt, predicted: &[u32]) -> bool {
    let answer = &prompt.tokens[prompt.answer_start..];
    let guesses = &predicted[prompt.answer_start - 1..prompt.tokens.len() - 1];
    answer == guesses
}

/// Retrieval accuracy at one depth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthScore {
    /// Depth of the key.
    pub depth: f64,
    /// Prompts at this depth.
    pub trials: usize,
    /// Prompts whose answer the model spelled.
    pub retrieved: usize,
    /// Mean over the prompts of the answer's mean negative log-likelihood (nats per token).
    pub answer_loss: f64,
}

/// Mean negative log-likelihood (nats per token) of the prompt's answer under `logits`
/// (`[tokens, vocab]`, row `i` predicting the token after `tokens[..=i]`).
///
/// # Example
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::inference::passkey::{PasskeyPrompt, answer_loss};
/// let prompt = PasskeyPrompt { depth: 0.0, tokens: vec![0, 1, 1], answer_start: 2 };
/// // Uniform over two tokens at every position: ln 2 per answer token.
/// let logits = Tensor::<2>::zeros([3, 2], &Device::flex());
/// assert!((answer_loss(&prompt, logits) - 2f64.ln()).abs() < 1e-6);
/// ```
pub fn answer_loss(prompt: &PasskeyPrompt, logits: Tensor<2>) -> f64 {
    let [len, vocab] = logits.dims();
    let rows = logits.slice(prompt.answer_start - 1..len - 1);
    let log_probs: Vec<f32> = log_softmax(rows, 1).into_data().iter::<f32>().collect();
    let answer = &prompt.tokens[prompt.answer_start..];
    let total: f64 = answer
        .iter()
        .enumerate()
        .map(|(row, &token)| -f64::from(log_probs[row * vocab + token as usize]))
        .sum();
    total / answer.len() as f64
}

/// Scores `prompts` with `inference` (batches of `batch` prompts), grouped by depth in the
/// prompts' order.
pub fn evaluate(inference: &Inference, prompts: &[PasskeyPrompt], batch: usize) -> Vec<DepthScore> {
    let mut scores: Vec<DepthScore> = Vec::new();
    for chunk in prompts.chunks(batch.max(1)) {
        let sequences: Vec<&[u32]> = chunk.iter().map(|p| p.tokens.as_slice()).collect();
        let outputs = inference.sequences_hidden_and_logits(&sequences);
        for (prompt, (_, logits)) in chunk.iter().zip(outputs) {
            let loss = answer_loss(prompt, logits.clone());
            let predicted: Vec<u32> = logits
                .argmax(1)
                .into_data()
                .iter::<i64>()
                .map(|t| t as u32)
                .collect();
            let hit = usize::from(spells_answer(prompt, &predicted));
            match scores.last_mut() {
                Some(s) if s.depth == prompt.depth => {
                    s.trials += 1;
                    s.retrieved += hit;
                    s.answer_loss += loss;
                }
                _ => scores.push(DepthScore {
                    depth: prompt.depth,
                    trials: 1,
                    retrieved: hit,
                    answer_loss: loss,
                }),
            }
        }
    }
    for s in &mut scores {
        s.answer_loss /= s.trials as f64;
    }
    scores
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    #[test]
    fn answer_loss_reads_the_row_before_each_answer_token() {
        let _rng = crate::test_rng::lock();
        // Row i predicts token i + 1: rows 1 and 2 predict the answer [2, 0].
        let prompt = PasskeyPrompt {
            depth: 0.0,
            tokens: vec![1, 1, 2, 0],
            answer_start: 2,
        };
        let confident = [0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let logits =
            Tensor::<2>::from_data(TensorData::new(confident.to_vec(), [4, 3]), &Device::flex());
        assert!(answer_loss(&prompt, logits) < 1e-6);
        // The same confidence in other tokens: the answer's get about e^-20 of the mass.
        let shifted = [0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0];
        let logits =
            Tensor::<2>::from_data(TensorData::new(shifted.to_vec(), [4, 3]), &Device::flex());
        assert!(answer_loss(&prompt, logits) > 19.0);
    }

    /// One token per character: every piece tokenizes the same alone as inside the text.
    fn chars(text: &str) -> Result<Vec<u32>, String> {
        Ok(text.chars().map(|c| c as u32).collect())
    }

    #[test]
    fn prompts_fill_the_context_and_end_with_the_answer_at_the_requested_depth() {
        let _rng = crate::test_rng::lock();
        let made = prompts(600, &[0.0, 0.5, 1.0], 3, 7, 1, chars).unwrap();
        assert_eq!(made.len(), 9);
        let longest_filler = FILLER.iter().map(|s| s.len()).max().unwrap();
        for prompt in &made {
            assert!(prompt.tokens.len() <= 600);
            assert!(
                prompt.tokens.len() > 600 - longest_filler,
                "filled to the budget"
            );
            assert_eq!(prompt.tokens[0], 1, "starts like a packed document");
            let text: String = prompt.tokens[1..]
                .iter()
                .map(|&c| char::from_u32(c).unwrap())
                .collect();
            let answer: String = text[prompt.answer_start - 1..].to_owned();
            assert!(
                answer.starts_with(' ') && answer[1..].parse::<u32>().is_ok(),
                "{answer}"
            );
            let key_at = text.find(&format!("The pass key is{answer}.")).unwrap();
            // The key sentence sits at the requested fraction of the filler sentences.
            let count = |t: &str| FILLER.iter().map(|f| t.matches(f).count()).sum::<usize>();
            let (before, total) = (count(&text[..key_at]), count(&text));
            let share = before as f64 / total as f64;
            assert!(
                (share - prompt.depth).abs() <= 0.5 / total as f64 + 1e-9,
                "depth {} at {share}",
                prompt.depth
            );
        }
        // Seeded: the same prompts again, other prompts under another seed.
        assert_eq!(
            made,
            prompts(600, &[0.0, 0.5, 1.0], 3, 7, 1, chars).unwrap()
        );
        assert_ne!(
            made,
            prompts(600, &[0.0, 0.5, 1.0], 3, 8, 1, chars).unwrap()
        );
    }

    #[test]
    fn a_context_too_short_for_the_bare_task_is_refused() {
        let _rng = crate::test_rng::lock();
        let err = prompts(50, &[0.5], 1, 0, 1, chars).unwrap_err();
        assert!(err.contains("more than the context of 50"), "{err}");
    }

    #[test]
    fn documents_are_the_prompts_text_with_the_answer() {
        let _rng = crate::test_rng::lock();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let task = PasskeyTask::random(&mut rng, 6, 0.0);
        assert!(task.before.is_empty() && task.after.len() == 6);
        let doc = task.document();
        assert!(doc.starts_with(INSTRUCTION));
        assert_eq!(doc.matches(&task.key.to_string()).count(), 3);
        let prompt = tokenized(&task, 0.0, 0, &mut chars).unwrap();
        let text: String = prompt.tokens[1..]
            .iter()
            .map(|&c| char::from_u32(c).unwrap())
            .collect();
        assert_eq!(format!("{text}."), doc);
    }
}
