//! A model library's ABI in LLVM: the constant `tcc_model_desc`, the exported `PREFIX_*`
//! wrappers around the runtime's `tcc_rt_*`, and the model's C header.
//!
//! The runtime (`runtime/`, linked into every model library) implements the whole public C API
//! once, generically over a model descriptor; `runtime/include/tcc_model.h` is the source of
//! truth of both. Given a plain [`Interface`] (the model's inputs, outputs, symbols and size
//! checks) and the four LLVM functions the backend provides ([`EntryPoints`]),
//! [`emit_model_abi`] adds to a module:
//!
//! - the descriptor and the tables it points to, all private constants;
//! - one exported function `PREFIX_name` per entry of [`API`], each a tail call of
//!   `tcc_rt_name(&descriptor, args...)`;
//! - internal linkage for the entry points defined in this module.
//!
//! [`header`] writes the matching C header: the public types of `tcc_model.h`, each input and
//! output with its name, dtype and symbolic shape, and the API's declarations and contract.
//! [`declare_parallel_for`] and [`declare_num_threads`] give kernels the runtime's thread pool.

use std::fmt::Write as _;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::context::ContextRef;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum, FunctionType, StructType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValueEnum, FunctionValue, GlobalValue, PointerValue,
};
use inkwell::AddressSpace;
use tcc_ir::DType;

use crate::error::{Error, Result};

/// `runtime/include/tcc_model.h`: the ABI and the public API's source of truth.
pub const RUNTIME_HEADER: &str = include_str!("../../../runtime/include/tcc_model.h");

/// `TCC_ABI_VERSION`.
pub const ABI_VERSION: u32 = 2;

/// `TCC_CHECK_VALUES`: how many values a failed size check reports.
pub const CHECK_VALUES: usize = 16;

/// `TCC_MAX_RANK`: the largest rank of an output.
pub const MAX_RANK: usize = 8;

/// `TCC_DIM_COMPUTED`: an output dim only `output_dims` knows.
pub const DIM_COMPUTED: i64 = i64::MIN;

/// The name of the descriptor constant in the module (private, so never seen outside).
pub const DESC_NAME: &str = "tcc_model_desc";

/// The `tcc_dtype` code of a dtype: 1-based, in the order of [`DType::ALL`].
pub fn dtype_code(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => 1,
        DType::F64 => 2,
        DType::F16 => 3,
        DType::BF16 => 4,
        DType::I64 => 5,
        DType::I32 => 6,
        DType::I8 => 7,
        DType::U8 => 8,
        DType::Bool => 9,
    }
}

/// One axis of a tensor in the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A size fixed at compile time.
    Fixed(u64),
    /// A symbol of [`Interface::symbols`], by name: a size given per run.
    Symbol(String),
    /// Outputs only: an expression of the symbols (such as `2*seq`), shown in the header;
    /// its value comes from the model's `output_dims` function.
    Computed(String),
}

/// An input or output of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name users see (the ONNX name).
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// One entry per axis.
    pub dims: Vec<Dim>,
}

/// A model's interface: what the runtime checks and the header documents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// The inputs, in call order. Their dims are fixed or plain symbols.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in call order, of rank at most [`MAX_RANK`].
    pub outputs: Vec<TensorSpec>,
    /// The symbols, numbered in this order in the `symbols` array generated code receives.
    /// Each must be a dim of some input, which binds it.
    pub symbols: Vec<String>,
    /// The messages of the size checks, in the order [`EntryPoints::check_sizes`] numbers
    /// them: templates where `{k}` stands for the check's value `k` (below [`CHECK_VALUES`]),
    /// `{{` and `}}` for braces.
    pub size_checks: Vec<String>,
    /// When the library holds several forms of the model and picks one per call by a
    /// symbol's value: one line per form, saying at which sizes it runs (the header lists
    /// them). Empty for one form.
    pub forms: Vec<String>,
    /// What the caller must know of the outputs' values beyond their types (padding
    /// elimination's zeros at padded positions), one paragraph each, for the header.
    pub notes: Vec<String>,
}

/// The functions the backend provides, with the descriptor's signatures
/// ([`run_fn_type`], [`output_dims_fn_type`], [`arena_bytes_fn_type`],
/// [`check_sizes_fn_type`]).
///
/// Those defined in the module being emitted into become internal; declarations stay external
/// (defined in another object of the same library, and hidden by the link's version script).
#[derive(Clone, Copy, Debug)]
pub struct EntryPoints<'ctx> {
    /// `int32_t run(tcc_rt_pool*, const int64_t *symbols, const void *const *inputs,
    /// void *const *outputs, uint8_t *arena)`, returning 0 on success.
    pub run: FunctionValue<'ctx>,
    /// `void output_dims(const int64_t *symbols, int64_t *dims)`: all outputs' dims,
    /// concatenated in output order.
    pub output_dims: FunctionValue<'ctx>,
    /// `uint64_t arena_bytes(const int64_t *symbols)`.
    pub arena_bytes: FunctionValue<'ctx>,
    /// `int32_t check_sizes(const int64_t *symbols, int64_t *values)`: -1 if every size check
    /// of [`Interface::size_checks`] holds, else the index of the first that fails, with its
    /// values in `values[..CHECK_VALUES]`.
    pub check_sizes: FunctionValue<'ctx>,
}

/// A C type of the API, with its LLVM type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CType {
    /// `void` (return types only).
    Void,
    /// `int32_t`.
    I32,
    /// `int64_t`.
    I64,
    /// A pointer, spelled in C as given (such as `const char *`).
    Ptr(&'static str),
}

impl CType {
    /// The C spelling, ready to be followed by a name.
    pub fn c(self) -> &'static str {
        match self {
            CType::Void => "void ",
            CType::I32 => "int32_t ",
            CType::I64 => "int64_t ",
            CType::Ptr(spelling) => spelling,
        }
    }

    fn llvm<'ctx>(self, context: ContextRef<'ctx>) -> Option<BasicTypeEnum<'ctx>> {
        match self {
            CType::Void => None,
            CType::I32 => Some(context.i32_type().into()),
            CType::I64 => Some(context.i64_type().into()),
            CType::Ptr(_) => Some(context.ptr_type(AddressSpace::default()).into()),
        }
    }
}

/// One function of the public API: exported as `PREFIX_name`, implemented by the runtime as
/// `tcc_rt_name(const tcc_model_desc *desc, params...)`.
#[derive(Clone, Copy, Debug)]
pub struct ApiFunction {
    /// The name after the prefix.
    pub name: &'static str,
    /// The return type.
    pub ret: CType,
    /// The parameters (type, name), after the runtime's descriptor.
    pub params: &'static [(CType, &'static str)],
    /// What the header says about it.
    pub doc: &'static str,
}

const SESSION: CType = CType::Ptr("tcc_session *");
const CONST_SESSION: CType = CType::Ptr("const tcc_session *");
const STRING: CType = CType::Ptr("const char *");

/// The public API, in the header's order. `runtime/include/tcc_model.h` documents each in full.
pub const API: [ApiFunction; 18] = [
    ApiFunction {
        name: "session_create",
        ret: CType::I32,
        params: &[
            (CType::I32, "num_threads"),
            (CType::Ptr("tcc_session **"), "session"),
        ],
        doc: "Creates a session (thread pool, arena, session-owned outputs) and stores it in \
              *session. num_threads > 0 asks for that many threads, the caller's included; \
              <= 0 means TCC_NUM_THREADS if set (a positive integer), else the physical cores.",
    },
    ApiFunction {
        name: "session_free",
        ret: CType::Void,
        params: &[(SESSION, "session")],
        doc: "Stops the session's threads and frees it and its session-owned outputs. \
              NULL is a no-op.",
    },
    ApiFunction {
        name: "session_num_threads",
        ret: CType::I32,
        params: &[(CONST_SESSION, "session")],
        doc: "The number of threads the session runs on, or -1 for an invalid session.",
    },
    ApiFunction {
        name: "num_inputs",
        ret: CType::I32,
        params: &[],
        doc: "The number of inputs.",
    },
    ApiFunction {
        name: "num_outputs",
        ret: CType::I32,
        params: &[],
        doc: "The number of outputs.",
    },
    ApiFunction {
        name: "input_name",
        ret: STRING,
        params: &[(CType::I32, "i")],
        doc: "The name of input i, or NULL if out of range.",
    },
    ApiFunction {
        name: "output_name",
        ret: STRING,
        params: &[(CType::I32, "i")],
        doc: "The name of output i, or NULL if out of range.",
    },
    ApiFunction {
        name: "input_dtype",
        ret: CType::I32,
        params: &[(CType::I32, "i")],
        doc: "The tcc_dtype of input i, or 0 if out of range.",
    },
    ApiFunction {
        name: "output_dtype",
        ret: CType::I32,
        params: &[(CType::I32, "i")],
        doc: "The tcc_dtype of output i, or 0 if out of range.",
    },
    ApiFunction {
        name: "input_rank",
        ret: CType::I32,
        params: &[(CType::I32, "i")],
        doc: "The rank of input i, or -1 if out of range.",
    },
    ApiFunction {
        name: "output_rank",
        ret: CType::I32,
        params: &[(CType::I32, "i")],
        doc: "The rank of output i, or -1 if out of range.",
    },
    ApiFunction {
        name: "input_dim",
        ret: CType::I64,
        params: &[(CType::I32, "i"), (CType::I32, "axis")],
        doc: "The fixed size of that axis of input i, -1 if symbolic, -2 if out of range.",
    },
    ApiFunction {
        name: "input_dim_symbol",
        ret: STRING,
        params: &[(CType::I32, "i"), (CType::I32, "axis")],
        doc: "The symbol that axis of input i stands for, or NULL if fixed or out of range.",
    },
    ApiFunction {
        name: "output_dim",
        ret: CType::I64,
        params: &[(CType::I32, "i"), (CType::I32, "axis")],
        doc: "The fixed size of that axis of output i, -1 if it depends on the inputs' sizes, \
              -2 if out of range.",
    },
    ApiFunction {
        name: "output_dim_symbol",
        ret: STRING,
        params: &[(CType::I32, "i"), (CType::I32, "axis")],
        doc: "The symbol that axis of output i stands for, or NULL if fixed, computed from \
              symbols (such as past + seq) or out of range.",
    },
    ApiFunction {
        name: "run",
        ret: CType::I32,
        params: &[
            (SESSION, "session"),
            (CType::Ptr("const tcc_tensor *"), "inputs"),
            (CType::I32, "n_inputs"),
            (CType::Ptr("tcc_output *"), "outputs"),
            (CType::I32, "n_outputs"),
        ],
        doc: "Validates the inputs and runs the model. Each output goes to the caller's buffer \
              (buffer, capacity) or, with buffer NULL, to a session-owned buffer valid until the \
              next run or free of this session. On success fills in each output's data, size, \
              dtype, rank and dims; on failure every data is NULL (TCC_ERR_CAPACITY still fills \
              in the sizes).",
    },
    ApiFunction {
        name: "last_error",
        ret: STRING,
        params: &[(CONST_SESSION, "session")],
        doc: "The message of the last failed call on the session, or with NULL of the last \
              failure on this thread without a session. Never NULL.",
    },
    ApiFunction {
        name: "status_string",
        ret: STRING,
        params: &[(CType::I32, "status")],
        doc: "A short constant description of a status code.",
    },
];

/// The names a model library with this prefix exports: `PREFIX_name` for every [`API`] entry.
pub fn exported_names(prefix: &str) -> Vec<String> {
    API.iter().map(|f| format!("{prefix}_{}", f.name)).collect()
}

/// Whether `prefix` can prefix C identifiers: ASCII letters, digits and `_`, not starting with
/// a digit, not empty. The CLI checks `--prefix` with it before compiling.
pub fn is_valid_prefix(prefix: &str) -> bool {
    let mut bytes = prefix.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An [`Error::Internal`] about the interface: `subject` names the prefix, tensor or symbol.
fn invalid(subject: impl Into<String>, message: &'static str) -> Error {
    Error::Internal {
        function: subject.into(),
        message,
    }
}

/// Checks the prefix and the interface: unique, NUL-free names; inputs whose dims are fixed or
/// known symbols; outputs of rank at most [`MAX_RANK`] whose symbols are known; every symbol
/// bound by some input; NUL-free size check messages that fit an `int32_t` count.
pub fn check_interface(prefix: &str, interface: &Interface) -> Result<()> {
    if !is_valid_prefix(prefix) {
        return Err(invalid(prefix, "the prefix is not a C identifier"));
    }
    for (i, symbol) in interface.symbols.iter().enumerate() {
        if symbol.is_empty() || symbol.contains('\0') {
            return Err(invalid(symbol, "a symbol name is empty or contains NUL"));
        }
        if interface.symbols[..i].contains(symbol) {
            return Err(invalid(symbol, "the symbol is listed twice"));
        }
    }
    if i32::try_from(interface.size_checks.len()).is_err() {
        return Err(invalid(
            prefix,
            "the model has more size checks than an int32_t counts",
        ));
    }
    if let Some(m) = interface.size_checks.iter().find(|m| m.contains('\0')) {
        return Err(invalid(m, "a size check's message contains NUL"));
    }
    let mut bound = vec![false; interface.symbols.len()];
    for (list, is_input) in [(&interface.inputs, true), (&interface.outputs, false)] {
        for (i, tensor) in list.iter().enumerate() {
            if tensor.name.contains('\0') {
                return Err(invalid(&tensor.name, "a tensor name contains NUL"));
            }
            if list[..i].iter().any(|t| t.name == tensor.name) {
                return Err(invalid(
                    &tensor.name,
                    "two inputs or two outputs share this name",
                ));
            }
            if !is_input && tensor.dims.len() > MAX_RANK {
                return Err(invalid(
                    &tensor.name,
                    "an output's rank exceeds TCC_MAX_RANK",
                ));
            }
            for dim in &tensor.dims {
                match dim {
                    Dim::Fixed(size) if i64::try_from(*size).is_err() => {
                        return Err(invalid(&tensor.name, "a fixed dim exceeds i64::MAX"));
                    }
                    Dim::Fixed(_) => {}
                    Dim::Symbol(name) => {
                        let Some(k) = interface.symbols.iter().position(|s| s == name) else {
                            return Err(invalid(name, "a dim names a symbol not in the list"));
                        };
                        bound[k] |= is_input;
                    }
                    Dim::Computed(_) if is_input => {
                        return Err(invalid(
                            &tensor.name,
                            "an input dim must be fixed or a plain symbol",
                        ));
                    }
                    Dim::Computed(_) => {}
                }
            }
        }
    }
    if let Some(k) = bound.iter().position(|b| !b) {
        return Err(invalid(
            &interface.symbols[k],
            "the symbol is not a dim of any input, so no run can bind it",
        ));
    }
    Ok(())
}

/// `int32_t (tcc_rt_pool*, const int64_t*, const void *const*, void *const*, uint8_t*)`.
pub fn run_fn_type<'ctx>(context: ContextRef<'ctx>) -> FunctionType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    context.i32_type().fn_type(&[ptr; 5], false)
}

/// `void (const int64_t *symbols, int64_t *dims)`.
pub fn output_dims_fn_type<'ctx>(context: ContextRef<'ctx>) -> FunctionType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    context.void_type().fn_type(&[ptr; 2], false)
}

/// `uint64_t (const int64_t *symbols)`.
pub fn arena_bytes_fn_type<'ctx>(context: ContextRef<'ctx>) -> FunctionType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    context.i64_type().fn_type(&[ptr], false)
}

/// `int32_t (const int64_t *symbols, int64_t *values)`.
pub fn check_sizes_fn_type<'ctx>(context: ContextRef<'ctx>) -> FunctionType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    context.i32_type().fn_type(&[ptr; 2], false)
}

/// `void (void *ctx, int64_t i)`: a task of `tcc_rt_parallel_for`.
pub fn task_fn_type<'ctx>(context: ContextRef<'ctx>) -> FunctionType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    context
        .void_type()
        .fn_type(&[ptr, context.i64_type().into()], false)
}

/// Declares (once) `void tcc_rt_parallel_for(tcc_rt_pool*, int64_t n, void (*)(void*, int64_t),
/// void *ctx)`, which runs `fn(ctx, i)` for every `i` in `[0, n)` on the session's threads.
pub fn declare_parallel_for<'ctx>(module: &Module<'ctx>) -> FunctionValue<'ctx> {
    let context = module.get_context();
    let ptr = context.ptr_type(AddressSpace::default()).into();
    let ty = context
        .void_type()
        .fn_type(&[ptr, context.i64_type().into(), ptr, ptr], false);
    declare(module, "tcc_rt_parallel_for", ty)
}

/// Declares (once) `int32_t tcc_rt_num_threads(const tcc_rt_pool*)`.
pub fn declare_num_threads<'ctx>(module: &Module<'ctx>) -> FunctionValue<'ctx> {
    let context = module.get_context();
    let ty = context
        .i32_type()
        .fn_type(&[context.ptr_type(AddressSpace::default()).into()], false);
    declare(module, "tcc_rt_num_threads", ty)
}

/// The function `name` of the module, declared with `ty` if it is not there yet.
fn declare<'ctx>(module: &Module<'ctx>, name: &str, ty: FunctionType<'ctx>) -> FunctionValue<'ctx> {
    module.get_function(name).unwrap_or_else(|| {
        let function = module.add_function(name, ty, Some(Linkage::External));
        add_nounwind(function);
        function
    })
}

fn add_nounwind(function: FunctionValue<'_>) {
    let context = function.get_type().get_context();
    let nounwind = Attribute::get_named_enum_kind_id("nounwind");
    function.add_attribute(
        AttributeLoc::Function,
        context.create_enum_attribute(nounwind, 0),
    );
}

/// The LLVM type of `tcc_tensor_desc`: `{ ptr name, i32 dtype, i32 rank, ptr dims }`.
fn tensor_desc_type<'ctx>(context: ContextRef<'ctx>) -> StructType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    let i32 = context.i32_type().into();
    context.struct_type(&[ptr, i32, i32, ptr], false)
}

/// The LLVM type of `tcc_model_desc`: four 32-bit counts, six pointers, the count of size
/// checks (padded to 8 bytes by the pointers' alignment, as in C) and two pointers.
fn model_desc_type<'ctx>(context: ContextRef<'ctx>) -> StructType<'ctx> {
    let ptr = context.ptr_type(AddressSpace::default()).into();
    let i32 = context.i32_type().into();
    context.struct_type(
        &[
            i32, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, ptr, i32, ptr, ptr,
        ],
        false,
    )
}

/// Adds a private constant global initialised to `value` and returns its address.
fn private_constant<'ctx>(
    module: &Module<'ctx>,
    name: &str,
    value: BasicValueEnum<'ctx>,
) -> PointerValue<'ctx> {
    let global: GlobalValue<'ctx> = module.add_global(value.get_type(), None, name);
    global.set_initializer(&value);
    global.set_constant(true);
    global.set_linkage(Linkage::Private);
    global.set_unnamed_addr(true);
    global.as_pointer_value()
}

/// Emits the descriptor and the exported `PREFIX_*` wrappers for `interface` into `module`,
/// and makes the entry points defined in `module` internal. Returns the descriptor global.
///
/// Fails if the prefix or interface is invalid ([`check_interface`]), if an entry point has
/// the wrong signature, or if the module already has a descriptor or an API function.
pub fn emit_model_abi<'ctx>(
    module: &Module<'ctx>,
    prefix: &str,
    interface: &Interface,
    entry: &EntryPoints<'ctx>,
) -> Result<GlobalValue<'ctx>> {
    check_interface(prefix, interface)?;
    let context = module.get_context();
    for (function, expected, what) in [
        (
            entry.run,
            run_fn_type(context),
            "the run entry point has the wrong signature",
        ),
        (
            entry.output_dims,
            output_dims_fn_type(context),
            "the output_dims entry point has the wrong signature",
        ),
        (
            entry.arena_bytes,
            arena_bytes_fn_type(context),
            "the arena_bytes entry point has the wrong signature",
        ),
        (
            entry.check_sizes,
            check_sizes_fn_type(context),
            "the check_sizes entry point has the wrong signature",
        ),
    ] {
        if function.get_type() != expected {
            return Err(invalid(function.get_name().to_string_lossy(), what));
        }
    }
    if module.get_global(DESC_NAME).is_some() {
        return Err(invalid(prefix, "the module already has a model descriptor"));
    }
    for f in &API {
        let name = format!("{prefix}_{}", f.name);
        if module.get_function(&name).is_some() {
            return Err(invalid(name, "the module already has this API function"));
        }
    }

    let desc = emit_descriptor(module, interface, entry);
    for f in &API {
        emit_wrapper(module, prefix, f, desc.as_pointer_value())?;
    }
    for function in [
        entry.run,
        entry.output_dims,
        entry.arena_bytes,
        entry.check_sizes,
    ] {
        if function.count_basic_blocks() > 0 {
            function.set_linkage(Linkage::Internal);
        }
    }
    Ok(desc)
}

/// The descriptor's dim code of `dim` (valid after [`check_interface`]).
fn dim_code(interface: &Interface, dim: &Dim) -> i64 {
    match dim {
        Dim::Fixed(size) => *size as i64,
        Dim::Symbol(name) => {
            let k = interface
                .symbols
                .iter()
                .position(|s| s == name)
                .unwrap_or(0);
            -(k as i64 + 1)
        }
        Dim::Computed(_) => DIM_COMPUTED,
    }
}

fn emit_descriptor<'ctx>(
    module: &Module<'ctx>,
    interface: &Interface,
    entry: &EntryPoints<'ctx>,
) -> GlobalValue<'ctx> {
    let context = module.get_context();
    let i32_type = context.i32_type();
    let i64_type = context.i64_type();
    let ptr_type = context.ptr_type(AddressSpace::default());
    let tensor_type = tensor_desc_type(context);

    let string = |name: &str, text: &str| -> PointerValue<'ctx> {
        private_constant(
            module,
            name,
            context.const_string(text.as_bytes(), true).into(),
        )
    };
    let table = |kind: &str, list: &[TensorSpec]| -> PointerValue<'ctx> {
        let entries: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(i, tensor)| {
                let name = string(&format!("{DESC_NAME}.{kind}{i}.name"), &tensor.name);
                let codes: Vec<_> = tensor
                    .dims
                    .iter()
                    .map(|d| i64_type.const_int(dim_code(interface, d) as u64, true))
                    .collect();
                let dims = if codes.is_empty() {
                    ptr_type.const_null()
                } else {
                    private_constant(
                        module,
                        &format!("{DESC_NAME}.{kind}{i}.dims"),
                        i64_type.const_array(&codes).into(),
                    )
                };
                tensor_type.const_named_struct(&[
                    name.into(),
                    i32_type
                        .const_int(dtype_code(tensor.dtype) as u64, false)
                        .into(),
                    i32_type.const_int(tensor.dims.len() as u64, false).into(),
                    dims.into(),
                ])
            })
            .collect();
        if entries.is_empty() {
            return ptr_type.const_null();
        }
        private_constant(
            module,
            &format!("{DESC_NAME}.{kind}s"),
            tensor_type.const_array(&entries).into(),
        )
    };
    let inputs = table("input", &interface.inputs);
    let outputs = table("output", &interface.outputs);
    let symbol_names = if interface.symbols.is_empty() {
        ptr_type.const_null()
    } else {
        let names: Vec<_> = interface
            .symbols
            .iter()
            .enumerate()
            .map(|(k, s)| string(&format!("{DESC_NAME}.symbol{k}"), s))
            .collect();
        private_constant(
            module,
            &format!("{DESC_NAME}.symbols"),
            ptr_type.const_array(&names).into(),
        )
    };
    let size_checks = if interface.size_checks.is_empty() {
        ptr_type.const_null()
    } else {
        let messages: Vec<_> = interface
            .size_checks
            .iter()
            .enumerate()
            .map(|(k, m)| string(&format!("{DESC_NAME}.check{k}"), m))
            .collect();
        private_constant(
            module,
            &format!("{DESC_NAME}.checks"),
            ptr_type.const_array(&messages).into(),
        )
    };
    let count = |n: usize| i32_type.const_int(n as u64, false).into();
    let value = model_desc_type(context).const_named_struct(&[
        i32_type.const_int(u64::from(ABI_VERSION), false).into(),
        count(interface.inputs.len()),
        count(interface.outputs.len()),
        count(interface.symbols.len()),
        inputs.into(),
        outputs.into(),
        symbol_names.into(),
        entry
            .output_dims
            .as_global_value()
            .as_pointer_value()
            .into(),
        entry
            .arena_bytes
            .as_global_value()
            .as_pointer_value()
            .into(),
        entry.run.as_global_value().as_pointer_value().into(),
        count(interface.size_checks.len()),
        size_checks.into(),
        entry
            .check_sizes
            .as_global_value()
            .as_pointer_value()
            .into(),
    ]);
    let global = module.add_global(value.get_type(), None, DESC_NAME);
    global.set_initializer(&value);
    global.set_constant(true);
    global.set_linkage(Linkage::Private);
    global
}

/// Emits `ret PREFIX_name(params) { return tcc_rt_name(desc, params); }`.
fn emit_wrapper<'ctx>(
    module: &Module<'ctx>,
    prefix: &str,
    f: &ApiFunction,
    desc: PointerValue<'ctx>,
) -> Result<()> {
    let context = module.get_context();
    let params: Vec<BasicMetadataTypeEnum<'ctx>> = f
        .params
        .iter()
        .filter_map(|(ty, _)| ty.llvm(context).map(Into::into))
        .collect();
    let ptr = context.ptr_type(AddressSpace::default()).into();
    let rt_params: Vec<BasicMetadataTypeEnum<'ctx>> =
        std::iter::once(ptr).chain(params.iter().copied()).collect();
    let (wrapper_type, rt_type) = match f.ret.llvm(context) {
        Some(ret) => (ret.fn_type(&params, false), ret.fn_type(&rt_params, false)),
        None => (
            context.void_type().fn_type(&params, false),
            context.void_type().fn_type(&rt_params, false),
        ),
    };
    let rt_name = format!("tcc_rt_{}", f.name);
    let runtime = declare(module, &rt_name, rt_type);
    if runtime.get_type() != rt_type {
        return Err(invalid(
            rt_name,
            "the module declares this runtime function differently",
        ));
    }
    let name = format!("{prefix}_{}", f.name);
    let wrapper = module.add_function(&name, wrapper_type, Some(Linkage::External));
    add_nounwind(wrapper);
    let builder = context.create_builder();
    builder.position_at_end(context.append_basic_block(wrapper, "entry"));
    let args: Vec<BasicMetadataValueEnum<'ctx>> = std::iter::once(desc.into())
        .chain(wrapper.get_param_iter().map(Into::into))
        .collect();
    let call = builder
        .build_call(runtime, &args, "")
        .map_err(Error::builder(&name))?;
    call.set_tail_call(true);
    match call.try_as_basic_value().basic() {
        Some(value) => builder.build_return(Some(&value)),
        None => builder.build_return(None),
    }
    .map_err(Error::builder(&name))?;
    Ok(())
}

/// The public types block of `tcc_model.h` (status codes, dtypes, `tcc_tensor`,
/// `tcc_output`), which every model header repeats under one include guard.
pub fn public_types() -> &'static str {
    const BEGIN: &str = "/* BEGIN TCC PUBLIC TYPES */";
    const END: &str = "/* END TCC PUBLIC TYPES */";
    let start = RUNTIME_HEADER.find(BEGIN).unwrap_or(0);
    let end = RUNTIME_HEADER
        .find(END)
        .map_or(RUNTIME_HEADER.len(), |e| e + END.len());
    &RUNTIME_HEADER[start..end]
}

/// Text that is safe inside a C comment: no `*/`, no control characters.
fn comment_safe(text: &str) -> String {
    text.replace("*/", "* /")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `text` as a C block comment, wrapped at 96 columns.
fn c_comment(text: &str) -> String {
    let mut comment = String::from("/*");
    let mut line_len = comment.len();
    for word in text.split_whitespace() {
        if line_len + 1 + word.len() > 96 {
            comment.push_str("\n *");
            line_len = 2;
        }
        comment.push(' ');
        comment.push_str(word);
        line_len += 1 + word.len();
    }
    comment.push_str(" */");
    comment
}

/// The symbolic shape of a tensor as the header shows it: `f32[batch, seq, 768]`.
fn shape_text(tensor: &TensorSpec) -> String {
    let dims: Vec<String> = tensor
        .dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(size) => size.to_string(),
            Dim::Symbol(name) | Dim::Computed(name) => comment_safe(name),
        })
        .collect();
    format!("{}[{}]", tensor.dtype.name(), dims.join(", "))
}

/// The C header of the model library with this prefix and interface.
///
/// It repeats the public types of `tcc_model.h` (under their own include guard, so headers of
/// several models can be included together), lists every input and output with its index,
/// name, dtype and symbolic shape, each symbol with the input axis that binds it, and declares
/// every `PREFIX_*` function with its contract.
pub fn header(prefix: &str, interface: &Interface) -> Result<String> {
    check_interface(prefix, interface)?;
    let guard = format!("TCC_MODEL_{}_H", prefix.to_ascii_uppercase());
    let mut h = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        h,
        "/*\n * {prefix}.h: the C interface of the tcc-compiled model `{prefix}`. Generated by \
         tcc; do not edit.\n *\n * Link with the model library (for example `cc main.c \
         -L. -l{prefix}`); it needs only libc,\n * libm and libpthread, and exports only the \
         {prefix}_* functions declared below.\n *"
    );
    let width = interface
        .inputs
        .iter()
        .chain(&interface.outputs)
        .map(|t| comment_safe(&t.name).chars().count())
        .max()
        .unwrap_or(0);
    for (title, list) in [
        ("Inputs (tcc_tensor, in this order)", &interface.inputs),
        ("Outputs (tcc_output, in this order)", &interface.outputs),
    ] {
        let _ = writeln!(h, " * {title}:");
        if list.is_empty() {
            let _ = writeln!(h, " *   (none)");
        }
        for (i, tensor) in list.iter().enumerate() {
            let _ = writeln!(
                h,
                " *   {i:>2}  {:<width$}  {}",
                comment_safe(&tensor.name),
                shape_text(tensor)
            );
        }
    }
    let _ = writeln!(
        h,
        " * Symbols (sizes read from the input dims; equal wherever they appear; 0 where the \
         model allows it):"
    );
    if interface.symbols.is_empty() {
        let _ = writeln!(h, " *   (none)");
    }
    for symbol in &interface.symbols {
        let binder = interface.inputs.iter().enumerate().find_map(|(i, t)| {
            let axis = t
                .dims
                .iter()
                .position(|d| d == &Dim::Symbol(symbol.clone()))?;
            Some(format!(
                "input {i} (`{}`) axis {axis}",
                comment_safe(&t.name)
            ))
        });
        let _ = writeln!(
            h,
            " *   {:<width$}  first given by {}",
            comment_safe(symbol),
            binder.unwrap_or_default()
        );
    }
    for note in &interface.notes {
        let _ = writeln!(h, " *\n * {}", comment_safe(note));
    }
    if !interface.forms.is_empty() {
        let _ = writeln!(
            h,
            " * Forms: the cost model prefers other forms of this model at other sizes, so \
             the library\n * holds {} and each run takes the one for its sizes (its own \
             memory plan and size checks):",
            interface.forms.len()
        );
        for (k, form) in interface.forms.iter().enumerate() {
            let _ = writeln!(h, " *   form {k}: {}", comment_safe(form));
        }
    }
    let _ = writeln!(
        h,
        " *\n * Thread safety: a session is used by one thread at a time; different sessions (of \
         this or\n * other models) run concurrently on different threads. The interface queries \
         may be called\n * from any thread at any time.\n *\n * Ownership: inputs and caller \
         buffers stay the caller's. A session-owned output (buffer NULL)\n * is valid until the \
         next {prefix}_run or {prefix}_session_free on its session.\n *\n * Errors: every \
         function that can fail returns a tcc_status (TCC_OK is 0) and records a\n * message \
         for {prefix}_last_error. Invalid inputs are reported, never a crash.\n */\n#ifndef \
         {guard}\n#define {guard}\n"
    );
    h.push_str(public_types());
    let _ = writeln!(h, "\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n");
    for f in &API {
        let params = if f.params.is_empty() {
            "void".to_owned()
        } else {
            f.params
                .iter()
                .map(|(ty, name)| format!("{}{name}", ty.c()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            h,
            "{}\n{}{prefix}_{}({params});\n",
            c_comment(f.doc),
            f.ret.c(),
            f.name
        );
    }
    let _ = writeln!(h, "#ifdef __cplusplus\n}}\n#endif\n#endif /* {guard} */");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkwell::context::Context;

    fn spec(name: &str, dtype: DType, dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            dtype,
            dims,
        }
    }

    fn sym(name: &str) -> Dim {
        Dim::Symbol(name.to_owned())
    }

    fn interface() -> Interface {
        Interface {
            inputs: vec![
                spec("input_ids", DType::I64, vec![sym("batch"), sym("seq")]),
                spec("mask", DType::Bool, vec![sym("batch"), sym("seq")]),
            ],
            outputs: vec![spec(
                "logits",
                DType::F32,
                vec![sym("batch"), Dim::Computed("2*seq".into()), Dim::Fixed(768)],
            )],
            symbols: vec!["batch".into(), "seq".into()],
            size_checks: vec!["node %3: {0} and {1} differ".into()],
            forms: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A module with the three entry points, defined trivially.
    fn entry_points<'ctx>(module: &Module<'ctx>) -> EntryPoints<'ctx> {
        let context = module.get_context();
        let define = |name: &str, ty: FunctionType<'ctx>| {
            let function = module.add_function(name, ty, None);
            let builder = context.create_builder();
            builder.position_at_end(context.append_basic_block(function, "entry"));
            match ty.get_return_type() {
                Some(t) => builder.build_return(Some(&t.into_int_type().const_zero())),
                None => builder.build_return(None),
            }
            .unwrap();
            function
        };
        EntryPoints {
            run: define("model_run", run_fn_type(context)),
            output_dims: define("model_output_dims", output_dims_fn_type(context)),
            arena_bytes: define("model_arena_bytes", arena_bytes_fn_type(context)),
            check_sizes: define("model_check_sizes", check_sizes_fn_type(context)),
        }
    }

    #[test]
    fn the_descriptor_and_wrappers_verify_and_only_the_api_is_external() {
        let context = Context::create();
        let module = context.create_module("m");
        let entry = entry_points(&module);
        emit_model_abi(&module, "bert", &interface(), &entry).unwrap();
        crate::emit::verify(&module).unwrap();
        let mut external: Vec<String> = module
            .get_functions()
            .filter(|f| f.count_basic_blocks() > 0 && f.get_linkage() == Linkage::External)
            .map(|f| f.get_name().to_string_lossy().into_owned())
            .collect();
        external.sort();
        let mut expected = exported_names("bert");
        expected.sort();
        assert_eq!(external, expected);
        assert!(module
            .get_globals()
            .all(|g| g.get_linkage() == Linkage::Private));
        let text = module.print_to_string().to_string();
        assert!(text.contains("c\"input_ids\\00\""), "{text}");
        assert!(
            text.contains("c\"node %3: {0} and {1} differ\\00\""),
            "{text}"
        );
        // The output's dims: batch is symbol 0 (-1), 2*seq is computed, 768 is fixed.
        assert!(
            text.contains("[i64 -1, i64 -9223372036854775808, i64 768]"),
            "{text}"
        );
        assert!(
            text.contains("tail call i32 @tcc_rt_run(ptr @tcc_model_desc"),
            "{text}"
        );
    }

    #[test]
    fn bad_interfaces_are_refused_with_the_name_at_fault() {
        type Spoil = Box<dyn Fn(&mut Interface)>;
        let cases: Vec<(&str, Spoil, &str)> = vec![
            ("9lives", Box::new(|_| {}), "9lives"),
            (
                "m",
                Box::new(|i| i.inputs[1].name = "input_ids".into()),
                "input_ids",
            ),
            ("m", Box::new(|i| i.inputs[0].dims[0] = sym("beam")), "beam"),
            (
                "m",
                Box::new(|i| i.inputs[0].dims[1] = Dim::Computed("seq+1".into())),
                "input_ids",
            ),
            ("m", Box::new(|i| i.symbols.push("unused".into())), "unused"),
            ("m", Box::new(|i| i.symbols.push("batch".into())), "batch"),
            (
                "m",
                Box::new(|i| i.outputs[0].dims = vec![Dim::Fixed(1); 9]),
                "logits",
            ),
            (
                "m",
                Box::new(|i| i.outputs[0].name = "lo\0gits".into()),
                "lo\0gits",
            ),
            (
                "m",
                Box::new(|i| i.inputs[1].dims = vec![Dim::Fixed(u64::MAX)]),
                "mask",
            ),
        ];
        for (prefix, spoil, subject) in cases {
            let mut bad = interface();
            spoil(&mut bad);
            let err = check_interface(prefix, &bad).unwrap_err();
            assert!(
                matches!(&err, Error::Internal { function, .. } if function == subject),
                "{err:?}"
            );
            assert!(header(prefix, &bad).is_err());
        }
        check_interface("_m1", &interface()).unwrap();
    }

    #[test]
    fn entry_points_with_the_wrong_signature_are_refused() {
        let context = Context::create();
        let module = context.create_module("m");
        let mut entry = entry_points(&module);
        entry.arena_bytes =
            module.add_function("wrong", run_fn_type(context.i8_type().get_context()), None);
        let err = emit_model_abi(&module, "m", &interface(), &entry).unwrap_err();
        assert!(err.to_string().contains("arena_bytes"), "{err}");
        assert!(
            module.get_function("m_run").is_none(),
            "nothing was emitted"
        );
    }

    #[test]
    fn emitting_twice_into_one_module_is_refused() {
        let context = Context::create();
        let module = context.create_module("m");
        let entry = entry_points(&module);
        emit_model_abi(&module, "a", &interface(), &entry).unwrap();
        assert!(emit_model_abi(&module, "b", &interface(), &entry).is_err());
    }

    #[test]
    fn the_header_lists_tensors_symbols_and_every_function() {
        let h = header("bert", &interface()).unwrap();
        for needle in [
            "0  input_ids  i64[batch, seq]",
            "1  mask       bool[batch, seq]",
            "0  logits     f32[batch, 2*seq, 768]",
            "batch      first given by input 0 (`input_ids`) axis 0",
            "#ifndef TCC_MODEL_BERT_H",
            "typedef struct tcc_output {",
            "int32_t bert_session_create(int32_t num_threads, tcc_session **session);",
            "int32_t bert_run(tcc_session *session, const tcc_tensor *inputs, int32_t n_inputs, \
             tcc_output *outputs, int32_t n_outputs);",
            "int32_t bert_num_inputs(void);",
            "const char *bert_last_error(const tcc_session *session);",
        ] {
            assert!(h.contains(needle), "`{needle}` not in:\n{h}");
        }
        for name in exported_names("bert") {
            assert!(h.contains(&format!("{name}(")), "{name} is not declared");
        }
    }

    #[test]
    fn names_cannot_break_out_of_header_comments() {
        let mut i = interface();
        i.inputs[0].name = "evil */ int x; /*".into();
        let h = header("m", &i).unwrap();
        assert!(!h.contains("evil */"), "{h}");
    }

    #[test]
    fn prefixes_are_c_identifiers() {
        for good in ["m1", "_x", "Bert_base_2"] {
            assert!(is_valid_prefix(good), "{good}");
        }
        for bad in ["", "1m", "a-b", "a b", "é"] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn dtype_codes_follow_the_ir_order_from_one() {
        for (k, dtype) in DType::ALL.into_iter().enumerate() {
            assert_eq!(dtype_code(dtype), k as i32 + 1);
        }
        assert!(RUNTIME_HEADER.contains(
            "TCC_F32 = 1, TCC_F64, TCC_F16, TCC_BF16, TCC_I64, TCC_I32, TCC_I8, TCC_U8, TCC_BOOL"
        ));
        assert!(public_types().starts_with("/* BEGIN TCC PUBLIC TYPES */"));
        assert!(public_types().ends_with("/* END TCC PUBLIC TYPES */"));
    }
}
