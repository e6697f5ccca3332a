//! The import flags that `inspect`, `interpret` and `compile` share: choices
//! that change what an imported graph computes.

use tcc_onnx::{ImportOptions, Int8MatMul};

/// The arithmetic of u8 x i8 `MatMulInteger`, as the command line names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Int8Arg {
    /// As ONNX Runtime computes it on x86 CPUs without VNNI: adjacent
    /// products summed in pairs, each pair sum saturated to 16 bits (x86's
    /// vpmaddubsw). The references of models quantised by ONNX Runtime's
    /// quantize_dynamic on such machines hold these numbers.
    #[default]
    OrtX86,
    /// Exactly, as the ONNX specification defines it (what ONNX Runtime
    /// computes on CPUs with VNNI, and on ARM).
    Exact,
}

/// How to import a model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// How u8 x i8 integer matrix products (dynamic int8 quantisation) are
    /// computed.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Int8Arg::OrtX86)]
    pub int8_matmul: Int8Arg,
}

impl ImportArgs {
    /// The importer's options.
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            int8_matmul: match self.int8_matmul {
                Int8Arg::OrtX86 => Int8MatMul::OrtX86,
                Int8Arg::Exact => Int8MatMul::Exact,
            },
        }
    }
}
