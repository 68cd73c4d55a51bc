//! mergekit's YAML merge configuration: `merge_method`, `base_model`, `models` (each with
//! `parameters`) or `slices` (each with `sources` of `model` + `layer_range`), `parameters`,
//! `dtype`, `tokenizer_source`, `chat_template`. A parameter is a scalar, a gradient (a list
//! of numbers interpolated over the layers of a slice), or a list of `{filter, value}` whose
//! first entry with a filter contained in the tensor's (Hugging Face) name applies.
//! Validation is as strict as mergekit's, with a clear message for each problem.
//! Reference: mergekit config.py (`evaluate_setting`, `ConfigReader.parameter`) and plan.py
//! (how `models:` becomes one slice, and the `t` of each layer).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{lookup, MergeError, Result};

/// A scalar parameter value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Scalar {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Num(v) => Some(*v),
            Scalar::Bool(b) => Some(*b as u8 as f64),
            Scalar::Str(_) => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Num(v) => Some(*v != 0.0),
            Scalar::Str(_) => None,
        }
    }
}

/// One `{filter, value}` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub value: Setting,
    #[serde(default)]
    pub filter: Option<String>,
}

/// A parameter setting, in mergekit's forms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    Scalar(Scalar),
    Gradient(Vec<f64>),
    List(Vec<Scalar>),
    Conditions(Vec<Condition>),
    Condition(Box<Condition>),
}

impl Setting {
    /// The value for the tensor `name` at position `t` (0..1) of its slice's layers; None when
    /// no condition matches.
    pub fn evaluate(&self, name: &str, t: f64) -> Result<Option<Scalar>> {
        match self {
            Setting::Scalar(s) => Ok(Some(s.clone())),
            Setting::Gradient(g) => {
                if g.is_empty() {
                    return Err(invalid("a gradient needs at least one value".into()));
                }
                let scaled = t * (g.len() - 1) as f64;
                let i0 = scaled as usize;
                let i1 = (i0 + 1).min(g.len() - 1);
                let frac = scaled - i0 as f64;
                Ok(Some(Scalar::Num(
                    (1.0 - frac) * g[i0.min(g.len() - 1)] + frac * g[i1],
                )))
            }
            Setting::List(l) => {
                if l.is_empty() {
                    return Err(invalid("an empty list is not a parameter value".into()));
                }
                Ok(Some(l[(t * (l.len() - 1) as f64) as usize].clone()))
            }
            Setting::Conditions(cs) => {
                for c in cs {
                    if let Some(v) = c.matching(name, t)? {
                        return Ok(Some(v));
                    }
                }
                Ok(None)
            }
            Setting::Condition(c) => c.matching(name, t),
        }
    }
}

impl Condition {
    fn matching(&self, name: &str, t: f64) -> Result<Option<Scalar>> {
        match self.filter.as_deref() {
            None | Some("*") => self.value.evaluate(name, t),
            Some(f) if name.contains(f) => self.value.evaluate(name, t),
            Some(_) => Ok(None),
        }
    }
}

type Params = BTreeMap<String, Setting>;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InputModel {
    pub model: String,
    #[serde(default)]
    pub parameters: Option<Params>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InputSlice {
    pub model: String,
    /// Layers `start..end` of the model.
    pub layer_range: (usize, usize),
    #[serde(default)]
    pub parameters: Option<Params>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputSlice {
    pub sources: Vec<InputSlice>,
    #[serde(default)]
    pub base_model: Option<String>,
    #[serde(default)]
    pub residual_weight: Option<f64>,
    #[serde(default)]
    pub parameters: Option<Params>,
}

impl OutputSlice {
    /// Layers in the slice (every source has as many).
    pub fn layers(&self) -> usize {
        self.sources
            .first()
            .map_or(0, |s| s.layer_range.1 - s.layer_range.0)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MergeConfig {
    pub merge_method: String,
    #[serde(default)]
    pub base_model: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<InputModel>>,
    #[serde(default)]
    pub slices: Option<Vec<OutputSlice>>,
    #[serde(default)]
    pub modules: Option<serde_yaml::Value>,
    #[serde(default)]
    pub parameters: Option<Params>,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub out_dtype: Option<String>,
    #[serde(default)]
    pub tokenizer_source: Option<String>,
    #[serde(default)]
    pub tokenizer: Option<serde_yaml::Value>,
    #[serde(default)]
    pub chat_template: Option<String>,
}

fn invalid(msg: String) -> MergeError {
    MergeError::Invalid {
        method: "config",
        msg,
    }
}

/// The dtypes mergekit accepts, by their names and ours.
pub const DTYPES: &[(&str, &str)] = &[
    ("float32", "F32"),
    ("fp32", "F32"),
    ("f32", "F32"),
    ("float16", "F16"),
    ("fp16", "F16"),
    ("f16", "F16"),
    ("half", "F16"),
    ("bfloat16", "BF16"),
    ("bf16", "BF16"),
];

/// Our type name for a mergekit dtype.
pub fn dtype_name(d: &str) -> Result<&'static str> {
    DTYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(d))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let known: Vec<_> = DTYPES.iter().map(|(n, _)| *n).collect();
            invalid(format!("dtype {d:?} (known: {})", known.join(", ")))
        })
}

impl MergeConfig {
    /// Parses and validates a YAML configuration.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let c: MergeConfig = serde_yaml::from_str(text)
            .map_err(|e| invalid(format!("not a merge configuration: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// mergekit's checks, before any tensor is read.
    pub fn validate(&self) -> Result<()> {
        let method = lookup(&self.merge_method)?;
        let forms = [
            self.models.is_some(),
            self.slices.is_some(),
            self.modules.is_some(),
        ];
        if forms.iter().filter(|&&f| f).count() != 1 {
            return Err(invalid(
                "exactly one of 'models', 'slices' or 'modules' must be present".into(),
            ));
        }
        if self.modules.is_some() {
            return Err(invalid(
                "'modules' (multi-module architectures) is not supported; use 'models' or 'slices'"
                    .into(),
            ));
        }
        if self.tokenizer_source.is_some() && self.tokenizer.is_some() {
            return Err(invalid(
                "cannot specify both tokenizer_source and tokenizer".into(),
            ));
        }
        for d in [&self.dtype, &self.out_dtype].into_iter().flatten() {
            dtype_name(d)?;
        }
        if let Some(src) = &self.tokenizer_source {
            let known = src == "base" || src == "union" || self.referenced_models().contains(src);
            if !known {
                return Err(invalid(format!(
                    "tokenizer_source {src:?} is neither 'base', 'union' nor one of the models"
                )));
            }
            if src == "base" && self.base_model.is_none() {
                return Err(invalid("tokenizer_source: base needs base_model".into()));
            }
        }
        if method.needs_base() && self.base_model.is_none() {
            return Err(MergeError::Invalid {
                method: method.name(),
                msg: "needs base_model".into(),
            });
        }
        for (i, s) in self.output_slices(None)?.iter().enumerate() {
            if s.sources.is_empty() {
                return Err(invalid(format!("slice {i} has no sources")));
            }
            for src in &s.sources {
                let (a, b) = src.layer_range;
                if a >= b {
                    return Err(invalid(format!(
                        "slice {i}: layer_range [{a}, {b}] of {} is empty",
                        src.model
                    )));
                }
            }
            let n = s.layers();
            if s.sources
                .iter()
                .any(|src| src.layer_range.1 - src.layer_range.0 != n)
            {
                return Err(invalid(format!(
                    "slice {i}: all inputs to a slice must contain the same number of layers"
                )));
            }
            // A method without a base combines the base model like any other.
            let base = s
                .base_model
                .as_ref()
                .or(self.base_model.as_ref())
                .filter(|_| method.takes_base());
            let has_base = base.is_some_and(|b| s.sources.iter().any(|src| &src.model == b));
            let others = s
                .sources
                .iter()
                .filter(|src| Some(&src.model) != base)
                .count();
            method.check_models(others, has_base)?;
        }
        Ok(())
    }

    /// Every model the configuration names.
    pub fn referenced_models(&self) -> Vec<String> {
        let mut v: Vec<String> = self.base_model.iter().cloned().collect();
        for m in self.models.iter().flatten() {
            v.push(m.model.clone());
        }
        for s in self.slices.iter().flatten() {
            v.extend(s.sources.iter().map(|src| src.model.clone()));
        }
        v.sort();
        v.dedup();
        v
    }

    /// The output as slices, as mergekit plans it: the `models:` form is one slice over every
    /// layer (`n_layers`; None: a placeholder of one layer, for validation) with the base model
    /// added as a source when it is not among the models.
    pub fn output_slices(&self, n_layers: Option<usize>) -> Result<Vec<OutputSlice>> {
        if let Some(s) = &self.slices {
            return Ok(s.clone());
        }
        let n = n_layers.unwrap_or(1);
        let mut sources: Vec<InputSlice> = self
            .models
            .iter()
            .flatten()
            .map(|m| InputSlice {
                model: m.model.clone(),
                layer_range: (0, n),
                parameters: m.parameters.clone(),
            })
            .collect();
        if let Some(b) = &self.base_model {
            if !sources.iter().any(|s| &s.model == b) {
                sources.push(InputSlice {
                    model: b.clone(),
                    layer_range: (0, n),
                    parameters: None,
                });
            }
        }
        Ok(vec![OutputSlice {
            sources,
            base_model: None,
            residual_weight: None,
            parameters: None,
        }])
    }

    /// A parameter as mergekit's `ConfigReader.parameter` finds it: the model's own setting in
    /// the slice (when `model` is given), then the slice's, then the configuration's.
    pub fn parameter(
        &self,
        slice: &OutputSlice,
        model: Option<&str>,
        name: &str,
        tensor: &str,
        t: f64,
    ) -> Result<Option<Scalar>> {
        let mut levels: Vec<&Params> = Vec::new();
        if let Some(m) = model {
            levels.extend(
                slice
                    .sources
                    .iter()
                    .filter(|s| s.model == m)
                    .filter_map(|s| s.parameters.as_ref()),
            );
        }
        levels.extend(slice.parameters.iter());
        levels.extend(self.parameters.iter());
        for p in levels {
            if let Some(s) = p.get(name) {
                if let Some(v) = s.evaluate(tensor, t)? {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }
}

/// The gradient position of layer `idx` of a slice of `n` layers (mergekit: idx / (n - 1), and
/// 1 for a one-layer slice); tensors outside the layers use 0.
pub fn layer_t(idx: usize, n: usize) -> f64 {
    if n > 1 {
        idx as f64 / (n - 1) as f64
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIES: &str = "
models:
  - model: ./a
    parameters:
      density: [1, 0.7, 0.1]
      weight: 1.0
  - model: ./b
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1]
  - model: ./c
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: ./base
parameters:
  normalize: true
  int8_mask: true
dtype: float16
";

    #[test]
    fn ties_example_resolves_gradients_and_filters() {
        let c = MergeConfig::from_yaml(TIES).unwrap();
        let slices = c.output_slices(Some(5)).unwrap();
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        let models: Vec<&str> = s.sources.iter().map(|x| x.model.as_str()).collect();
        assert_eq!(
            models,
            ["./a", "./b", "./c", "./base"],
            "the base joins as a source"
        );
        let mlp = "model.layers.2.mlp.up_proj.weight";
        let attn = "model.layers.2.self_attn.q_proj.weight";
        let p = |m, n, tensor, t| {
            c.parameter(s, Some(m), n, tensor, t)
                .unwrap()
                .and_then(|v| v.as_f64())
        };
        // density [1, 0.7, 0.1] at t = 0.25: halfway between 1 and 0.7.
        assert!((p("./a", "density", mlp, 0.25).unwrap() - 0.85).abs() < 1e-12);
        assert_eq!(p("./a", "density", mlp, 1.0), Some(0.1));
        // weight [0, 0.3, 0.7, 1] at t = 0.5: scaled 1.5, between 0.3 and 0.7.
        assert!((p("./b", "weight", mlp, 0.5).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(p("./c", "weight", mlp, 0.3), Some(0.5));
        assert_eq!(p("./c", "weight", attn, 0.3), Some(0.0));
        assert_eq!(
            c.parameter(s, None, "normalize", attn, 0.0).unwrap(),
            Some(Scalar::Bool(true))
        );
        assert_eq!(
            c.parameter(s, Some("./base"), "weight", attn, 0.0).unwrap(),
            None
        );
        assert_eq!(dtype_name(c.dtype.as_deref().unwrap()).unwrap(), "F16");
    }

    #[test]
    fn gradient_slerp_and_passthrough_slices_parse() {
        let slerp = "
slices:
  - sources:
      - model: ./x
        layer_range: [0, 24]
      - model: ./y
        layer_range: [0, 24]
merge_method: slerp
base_model: ./x
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
";
        let c = MergeConfig::from_yaml(slerp).unwrap();
        let s = &c.output_slices(None).unwrap()[0];
        let t = |name: &str, pos: f64| {
            c.parameter(s, None, "t", name, pos)
                .unwrap()
                .unwrap()
                .as_f64()
                .unwrap()
        };
        assert_eq!(t("model.layers.0.self_attn.o_proj.weight", 0.0), 0.0);
        assert!(
            (t("model.layers.6.self_attn.o_proj.weight", layer_t(6, 24))
                - (0.5 + (0.3 - 0.5) * (6.0 * 4.0 / 23.0 - 1.0)))
                .abs()
                < 1e-12
        );
        assert_eq!(
            t("model.layers.23.mlp.down_proj.weight", layer_t(23, 24)),
            0.0
        );
        assert_eq!(t("model.norm.weight", 0.0), 0.5);
        let frank = "
slices:
  - sources:
    - model: ./x
      layer_range: [0, 16]
  - sources:
    - model: ./y
      layer_range: [8, 24]
merge_method: passthrough
dtype: float16
";
        let c = MergeConfig::from_yaml(frank).unwrap();
        let s = c.output_slices(None).unwrap();
        assert_eq!(s.iter().map(OutputSlice::layers).sum::<usize>(), 32);
    }

    #[test]
    fn invalid_configurations_say_what_is_wrong() {
        let bad = |yaml: &str, needle: &str| {
            let e = MergeConfig::from_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        bad("merge_method: linear\n", "exactly one of");
        bad(
            "merge_method: wizardry\nmodels: [{model: a}]\n",
            "unknown merge method",
        );
        bad(
            "merge_method: ties\nmodels: [{model: a}, {model: b}]\n",
            "needs base_model",
        );
        bad(
            "merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}, {model: c}]\n",
            "exactly two models",
        );
        bad(
            "merge_method: linear\nmodels: [{model: a}]\ndtype: int4\n",
            "dtype \"int4\"",
        );
        bad(
            "merge_method: linear\nmodels: [{model: a}]\ntokenizer_source: z\n",
            "tokenizer_source",
        );
        bad(
            "merge_method: passthrough\nslices: [{sources: [{model: a, layer_range: [0, 4]}, {model: b, layer_range: [0, 8]}]}]\n",
            "same number of layers",
        );
        bad(
            "merge_method: passthrough\nslices: [{sources: [{model: a, layer_range: [4, 4]}]}]\n",
            "empty",
        );
        bad("merge_method: linear\nmodels: [{model: a}]\nparameters: {weight: [{value: 1, filtre: x}]}\n", "not a merge configuration");
        bad(
            "merge_method: model_stock\nbase_model: a\nmodels: [{model: b}]\n",
            "at least two",
        );
        bad(": : :", "not a merge configuration");
    }
}
