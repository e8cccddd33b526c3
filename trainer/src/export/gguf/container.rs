//! GGUF's container (version 3): a header, typed metadata, tensor infos and the aligned tensor
//! data, little-endian throughout (ggml's `docs/gguf.md`).
//!
//! Written by hand: the GGUF crates on crates.io either only read (`gguf`, used by the tests as
//! an independent parser), write only to a path and not atomically, or pull in a tensor runtime
//! or command-line dependencies; the format is a few dozen lines.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

use half::f16;

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// Alignment of the data section and of every tensor in it (`general.alignment`).
pub const ALIGNMENT: usize = 32;

/// ggml's tensor types that mixlab writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 32-bit floats.
    F32,
    /// IEEE half floats.
    F16,
    /// Blocks of 32 int4 weights with one f16 scale ([`crate::export::gguf::q4_0`]).
    Q4_0,
}

impl TensorType {
    /// ggml's type id.
    fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        [Self::F32, Self::F16, Self::Q4_0]
            .into_iter()
            .find(|t| t.id() == id)
    }

    /// `values` stored as this type (for `Q4_0`, rows whose length is a multiple of 32).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F16 => values
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect(),
            Self::Q4_0 => super::q4_0::pack(values),
        }
    }

    /// Values of `bytes` stored as this type.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Self::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Self::Q4_0 => super::q4_0::unpack(bytes),
        }
    }

    /// Bytes of `count` values, if `count` fits the type's blocks.
    pub fn size(self, count: usize) -> Option<usize> {
        match self {
            Self::F32 => count.checked_mul(4),
            Self::F16 => count.checked_mul(2),
            Self::Q4_0 => count
                .is_multiple_of(super::q4_0::BLOCK)
                .then_some(count / super::q4_0::BLOCK * super::q4_0::BLOCK_BYTES),
        }
    }
}

/// A metadata value of the kinds mixlab writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `UINT32`.
    U32(u32),
    /// `INT32`.
    I32(i32),
    /// `FLOAT32`.
    F32(f32),
    /// `BOOL`, one byte.
    Bool(bool),
    /// `STRING`: a u64 length and UTF-8 bytes.
    Str(String),
    /// `ARRAY` of values of one kind (the kind of the first; an empty array is of strings).
    Array(Vec<Value>),
}

impl Value {
    /// GGUF's value type id.
    fn type_id(&self) -> u32 {
        match self {
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::Str(_) => 8,
            Self::Array(_) => 9,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::Str(v) => encode_string(out, v),
            Self::Array(items) => {
                let kind = items.first().map_or(8, Value::type_id);
                out.extend_from_slice(&kind.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                items.iter().for_each(|item| item.encode(out));
            }
        }
    }
}

/// A tensor as stored: name, dimensions (`ne0`, the contiguous one, first), type and bytes
/// (borrowed from the file when read).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor<'a> {
    /// llama.cpp's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost first.
    pub ne: Vec<u64>,
    /// Element type.
    pub kind: TensorType,
    /// The data, `kind.size(ne.product())` bytes.
    pub bytes: Cow<'a, [u8]>,
}

/// The whole file: header, metadata, tensor infos, then each tensor's data at an aligned offset.
pub fn encode(metadata: &[(String, Value)], tensors: &[StoredTensor<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        encode_string(&mut out, key);
        out.extend_from_slice(&value.type_id().to_le_bytes());
        value.encode(&mut out);
    }
    let mut data = Vec::new();
    for tensor in tensors {
        encode_string(&mut out, &tensor.name);
        out.extend_from_slice(&(tensor.ne.len() as u32).to_le_bytes());
        tensor
            .ne
            .iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&tensor.kind.id().to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        data.extend_from_slice(&tensor.bytes);
        data.resize(data.len().next_multiple_of(ALIGNMENT), 0);
    }
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    out.extend_from_slice(&data);
    out
}

fn encode_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A file read back: its metadata (values of the kinds in [`Value`]; other kinds are skipped)
/// and its tensors by name.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    /// Metadata by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors by name, their bytes borrowed from the file's.
    pub tensors: BTreeMap<String, StoredTensor<'a>>,
}

/// Reads a GGUF file's metadata and tensors.
///
/// # Errors
/// `InvalidData` for another magic or version, a value or tensor type mixlab does not read, or
/// sizes that do not fit; `UnexpectedEof` for a truncated file.
pub fn decode(bytes: &[u8]) -> std::io::Result<Decoded<'_>> {
    let mut r = bytes;
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    let version = read_u32(&mut r)?;
    if &magic != MAGIC || version != VERSION {
        return Err(invalid(format!(
            "magic {magic:?} version {version}; expected GGUF 3"
        )));
    }
    let (n_tensors, n_kv) = (read_u64(&mut r)?, read_u64(&mut r)?);
    let mut decoded = Decoded::default();
    for _ in 0..n_kv {
        let key = read_string(&mut r)?;
        let kind = read_u32(&mut r)?;
        if let Some(value) = read_value(&mut r, kind)? {
            decoded.metadata.insert(key, value);
        }
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let name = read_string(&mut r)?;
        let n_dims = read_u32(&mut r)?.min(4);
        let ne: Vec<u64> = (0..n_dims)
            .map(|_| read_u64(&mut r))
            .collect::<std::io::Result<_>>()?;
        let (kind, offset) = (read_u32(&mut r)?, read_u64(&mut r)?);
        infos.push((name, ne, kind, offset));
    }
    let data_start = (bytes.len() - r.len()).next_multiple_of(ALIGNMENT);
    for (name, ne, kind, offset) in infos {
        let tensor = read_tensor(bytes, data_start, (name, ne, kind, offset))?;
        decoded.tensors.insert(tensor.name.clone(), tensor);
    }
    Ok(decoded)
}

fn read_tensor(
    bytes: &[u8],
    data_start: usize,
    (name, ne, kind, offset): (String, Vec<u64>, u32, u64),
) -> std::io::Result<StoredTensor<'_>> {
    let count = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let count = count.and_then(|c| usize::try_from(c).ok());
    let count = count.ok_or_else(|| invalid(format!("{name}: dimensions overflow")))?;
    let kind = TensorType::from_id(kind).ok_or_else(|| {
        invalid(format!(
            "{name}: tensor type {kind} (mixlab reads F32, F16, Q4_0)"
        ))
    })?;
    let size = kind
        .size(count)
        .ok_or_else(|| invalid(format!("{name}: {kind:?} with {count} values")))?;
    let start = usize::try_from(offset)
        .ok()
        .and_then(|o| data_start.checked_add(o));
    let raw = start
        .and_then(|s| bytes.get(s..s.checked_add(size)?))
        .ok_or_else(|| invalid(format!("{name}: data beyond the end of the file")))?;
    Ok(StoredTensor {
        name,
        ne,
        kind,
        bytes: Cow::Borrowed(raw),
    })
}

/// A value of GGUF type `kind`: `Some` for the kinds of [`Value`], `None` for other scalars
/// (skipped by width).
fn read_value(r: &mut &[u8], kind: u32) -> std::io::Result<Option<Value>> {
    let skip = |r: &mut &[u8], width: usize| -> std::io::Result<Option<Value>> {
        let mut buf = [0u8; 8];
        r.read_exact(&mut buf[..width])?;
        Ok(None)
    };
    Ok(Some(match kind {
        4 => Value::U32(read_u32(r)?),
        5 => Value::I32(read_u32(r)? as i32),
        6 => Value::F32(f32::from_bits(read_u32(r)?)),
        7 => Value::Bool(read_u8(r)? != 0),
        8 => Value::Str(read_string(r)?),
        9 => {
            let item_kind = read_u32(r)?;
            if item_kind == 9 {
                // Legal in GGUF, unused by llama.cpp's keys; refused so a damaged file cannot
                // nest arrays deep enough to exhaust the stack.
                return Err(invalid("an array of arrays".into()));
            }
            let len = read_u64(r)?;
            let mut items = Vec::new();
            for _ in 0..len {
                items.extend(read_value(r, item_kind)?);
            }
            Value::Array(items)
        }
        0 | 1 => return skip(r, 1),
        2 | 3 => return skip(r, 2),
        10..=12 => return skip(r, 8),
        other => return Err(invalid(format!("metadata value type {other}"))),
    }))
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn read_u8(r: &mut &[u8]) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(r: &mut &[u8]) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut &[u8]) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut &[u8]) -> std::io::Result<String> {
    let len = read_u64(r)?;
    let len = usize::try_from(len).ok().filter(|&l| l <= r.len());
    let len = len.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    let (s, rest) = r.split_at(len);
    *r = rest;
    Ok(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_of_every_written_kind_reads_back() {
        let metadata = vec![
            ("a.u32".to_owned(), Value::U32(7)),
            ("a.i32".to_owned(), Value::I32(-3)),
            ("a.f32".to_owned(), Value::F32(0.5)),
            ("a.bool".to_owned(), Value::Bool(true)),
            ("a.str".to_owned(), Value::Str("Ġthe".into())),
            (
                "a.strings".to_owned(),
                Value::Array(vec![Value::Str("x".into()), Value::Str("y z".into())]),
            ),
            (
                "a.ints".to_owned(),
                Value::Array(vec![Value::I32(1), Value::I32(3)]),
            ),
        ];
        let tensor = StoredTensor {
            name: "t".into(),
            ne: vec![3],
            kind: TensorType::F16,
            bytes: Cow::Owned(vec![1, 2, 3, 4, 5, 6]),
        };
        let bytes = encode(&metadata, std::slice::from_ref(&tensor));
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.metadata, metadata.into_iter().collect());
        assert_eq!(decoded.tensors["t"], tensor);
        // The data section starts aligned, and each tensor is padded to the alignment.
        assert_eq!(bytes.len() % ALIGNMENT, 0);
        assert_eq!(bytes[bytes.len() - ALIGNMENT..][..6], *tensor.bytes);
    }

    #[test]
    fn arrays_of_arrays_and_truncated_files_are_errors_not_panics() {
        let mut bytes = encode(&[("k".to_owned(), Value::U32(1))], &[]);
        assert_eq!(decode(&bytes).unwrap().metadata["k"], Value::U32(1));
        // The header (24 bytes) and the key (8 + 1); then the value's type, replaced.
        let value_start = 24 + 9;
        bytes.truncate(value_start);
        // An array (9) of arrays (9) of 2^40 items.
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("array of arrays"), "{err}");
        for cut in [3, 20, 30, value_start + 4] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
