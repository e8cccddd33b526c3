//! A model's parameters by name in the `[out, in]` layout that PyTorch, Hugging Face and GGUF
//! store, for the exporters ([`crate::export::gguf`], [`crate::export::hf`]).
//!
//! Inside mixlab a projection's weight is `[in, out]` (`x · W`); exported, it is transposed to
//! `[out, in]` (a row per output unit). The embedding (`[vocab, d_model]`) and the norms (`[d]`)
//! keep their shape. Names are burn's module paths (`layers.3.attention.wq.weight`); each
//! exporter maps them to its own convention.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::model::Model;

/// One parameter: its dimensions in the exported layout and its values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// `[out, in]` for projections, the parameter's own shape otherwise.
    pub dims: Vec<usize>,
    /// Values in row-major order of `dims`.
    pub values: Vec<f32>,
}

/// Every float parameter of `model` by burn path, in the exported layout, in module order.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::export::named::parameters;
/// let shape = Preset::Tiny.config(64);
/// let params = parameters(&Model::new(&shape, &Device::flex()));
/// let (path, ffn_up) = &params.iter().find(|(p, _)| p == "layers.0.ffn.w3.weight").unwrap();
/// // `[out, in]`, as PyTorch's Linear stores it.
/// assert_eq!(ffn_up.dims, [shape.ffn_hidden, shape.d_model]);
/// # let _ = path;
/// ```
pub fn parameters(model: &Model) -> Vec<(String, Exported)> {
    let mut collect = Collect::default();
    model.visit(&mut collect);
    collect.found
}

/// A model of `shape` on `device` whose parameters are `tensors` (by burn path, exported
/// layout), or the paths that are missing or of another shape.
///
/// # Errors
/// The burn paths without a tensor of the right dimensions, in module order.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::export::named::{model_from, parameters};
/// let shape = Preset::Tiny.config(64);
/// let mut params: std::collections::BTreeMap<_, _> =
///     parameters(&Model::new(&shape, &Device::flex())).into_iter().collect();
/// params.remove("norm.gamma");
/// let missing = model_from(&shape, &Device::flex(), params).unwrap_err();
/// assert_eq!(missing, ["norm.gamma"]);
/// ```
pub fn model_from(
    shape: &ModelConfig,
    device: &Device,
    mut tensors: BTreeMap<String, Exported>,
) -> Result<Model, Vec<String>> {
    let mut load = Load {
        tensors: &mut tensors,
        scope: Scope::default(),
        missing: Vec::new(),
    };
    let model = Module::map(Model::new(shape, device), &mut load);
    if load.missing.is_empty() {
        Ok(model)
    } else {
        Err(load.missing)
    }
}

/// An export format's names for mixlab's parameters: a two-way table.
#[derive(Debug)]
pub(crate) struct Names {
    /// Parameters outside the layers: (burn path, external name).
    pub(crate) model: &'static [(&'static str, &'static str)],
    /// Per-layer parameters: (burn path below `layers.N.`, external name below `prefix` `N.`).
    pub(crate) layer: &'static [(&'static str, &'static str)],
    /// The external prefix of layer `N` (`blk.`, `model.layers.`).
    pub(crate) prefix: &'static str,
}

impl Names {
    /// The external name of the parameter at burn `path` (`layers.3.attention.wq.weight`).
    pub(crate) fn external(&self, path: &str) -> Option<String> {
        self.rename(path, false)
    }

    /// The burn path of an external name.
    pub(crate) fn internal(&self, name: &str) -> Option<String> {
        self.rename(name, true)
    }

    fn rename(&self, from_name: &str, inverse: bool) -> Option<String> {
        let pick = |pair: &(&'static str, &'static str)| -> (&'static str, &'static str) {
            if inverse { (pair.1, pair.0) } else { *pair }
        };
        if let Some((_, name)) = self.model.iter().map(pick).find(|(p, _)| *p == from_name) {
            return Some(name.to_owned());
        }
        let (from, to) = if inverse {
            (self.prefix, "layers.")
        } else {
            ("layers.", self.prefix)
        };
        let (layer, rest) = from_name.strip_prefix(from)?.split_once('.')?;
        let (_, name) = self.layer.iter().map(pick).find(|(p, _)| *p == rest)?;
        Some(format!("{to}{layer}.{name}"))
    }
}

/// The module path a visitor or mapper is at and whether its innermost module is a projection
/// (whose `[in, out]` weight is stored transposed outside mixlab).
#[derive(Debug, Default)]
pub(crate) struct Scope {
    path: Vec<String>,
    projection: Vec<bool>,
}

impl Scope {
    /// Call from `enter_module`.
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_owned());
        self.projection.push(container_type == "Struct:Projection");
    }

    /// Call from `exit_module`.
    pub(crate) fn exit(&mut self) {
        self.path.pop();
        self.projection.pop();
    }

    /// Whether the parameter being visited is a projection's weight.
    pub(crate) fn in_projection(&self) -> bool {
        self.projection.last() == Some(&true)
    }
}

#[derive(Default)]
struct Collect {
    scope: Scope,
    found: Vec<(String, Exported)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.scope.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let dims = tensor.dims().to_vec();
        let (dims, values) = if self.scope.in_projection() && D == 2 {
            let t: Tensor<2> = tensor.reshape([dims[0], dims[1]]).transpose();
            (
                vec![dims[1], dims[0]],
                t.into_data().try_to_vec().expect("f32 weights"),
            )
        } else {
            (dims, tensor.into_data().try_to_vec().expect("f32 weights"))
        };
        let path = self.scope.path.join(".");
        self.found.push((path, Exported { dims, values }));
    }
}

struct Load<'a> {
    tensors: &'a mut BTreeMap<String, Exported>,
    scope: Scope,
    missing: Vec<String>,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.scope.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.scope.path.join(".");
        let projection = self.scope.in_projection() && D == 2;
        let dims = param.val().dims();
        let expected: Vec<usize> = if projection {
            vec![dims[1], dims[0]]
        } else {
            dims.to_vec()
        };
        match self.tensors.remove(&path) {
            Some(found)
                if found.dims == expected
                    && found.values.len() == dims.iter().product::<usize>() =>
            {
                param.map(|tensor| {
                    let device = tensor.device();
                    let data = TensorData::new(found.values, expected);
                    if projection {
                        Tensor::<2>::from_data(data, &device)
                            .transpose()
                            .reshape(dims)
                    } else {
                        Tensor::<D>::from_data(data, &device)
                    }
                })
            }
            _ => {
                self.missing.push(path);
                param
            }
        }
    }
}
