//! Kernels: LLVM functions that do the work of IR ops, one file per family.
//!
//! Every kernel is emitted through a [`KernelBuilder`], which owns the LLVM IR builder of one
//! function and gives the pieces all vector kernels share: the target's vector type, splats,
//! loads and stores that are either full-width or masked, and [`KernelBuilder::vector_loop`],
//! the strip-mined loop over `n` elements (full vectors, then one masked tail).
//!
//! The vector width is a parameter of the builder, not a constant of the kernel, so one emitter
//! serves SSE (4 lanes), AVX2 (8) and AVX-512 (16).
//!
//! Loads and stores assume only the element's alignment (4 bytes for `f32`): LLVM would otherwise
//! assume the vector's ABI alignment (32 or 64 bytes) and may emit aligned moves that fault on
//! buffers the caller aligned only to the element.

pub mod elementwise;
pub mod gemm;
pub mod int8;
pub mod vmath;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::types::{BasicMetadataTypeEnum, BasicTypeEnum, VectorType};
use inkwell::values::FloatValue;
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, FunctionValue, InstructionValue, IntValue,
    PointerValue, VectorValue,
};
use inkwell::{AddressSpace, IntPredicate};

use crate::error::{Error, Result};
use crate::target::Target;

/// The alignment, in bytes, kernels assume for `f32` buffers.
pub const F32_ALIGN: u32 = 4;

/// The type of a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// A pointer to a buffer (`const float*`, `float*`, ...).
    Ptr,
    /// A 64-bit integer, such as an element count.
    I64,
}

/// The builder of one kernel function: its LLVM builder, target and vector width.
pub struct KernelBuilder<'a, 'ctx> {
    context: ContextRef<'ctx>,
    module: &'a Module<'ctx>,
    builder: Builder<'ctx>,
    target: &'a Target,
    function: FunctionValue<'ctx>,
    name: String,
    lanes: u32,
}

impl<'a, 'ctx> KernelBuilder<'a, 'ctx> {
    /// Declares `void name(params...)` in the module, annotated for the target and `nounwind`,
    /// with the builder positioned in its entry block. Vectors have `lanes` `f32` lanes.
    pub fn new(
        module: &'a Module<'ctx>,
        target: &'a Target,
        name: &str,
        params: &[Param],
        lanes: u32,
    ) -> Result<Self> {
        if lanes == 0 {
            return Err(Error::Internal {
                function: name.to_owned(),
                message: "a kernel's vectors need at least one lane",
            });
        }
        if module.get_function(name).is_some() {
            // LLVM would silently rename the new function to `name.1`.
            return Err(Error::Internal {
                function: name.to_owned(),
                message: "the module already has a function of this name",
            });
        }
        let context = module.get_context();
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = params
            .iter()
            .map(|param| match param {
                Param::Ptr => context.ptr_type(AddressSpace::default()).into(),
                Param::I64 => context.i64_type().into(),
            })
            .collect();
        let function = module.add_function(name, context.void_type().fn_type(&params, false), None);
        target.annotate_function(function);
        let nounwind = Attribute::get_named_enum_kind_id("nounwind");
        function.add_attribute(
            AttributeLoc::Function,
            context.create_enum_attribute(nounwind, 0),
        );
        let builder = context.create_builder();
        builder.position_at_end(context.append_basic_block(function, "entry"));
        Ok(KernelBuilder {
            context,
            module,
            builder,
            target,
            function,
            name: name.to_owned(),
            lanes,
        })
    }

    /// The LLVM context.
    pub fn context(&self) -> ContextRef<'ctx> {
        self.context
    }

    /// The LLVM IR builder, positioned where the kernel's code goes.
    pub fn builder(&self) -> &Builder<'ctx> {
        &self.builder
    }

    /// The target the kernel is built for.
    pub fn target(&self) -> &'a Target {
        self.target
    }

    /// The function being built.
    pub fn function(&self) -> FunctionValue<'ctx> {
        self.function
    }

    /// The number of lanes of the kernel's vectors.
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    /// A shuffle's lane selection: lane `i` of the result takes lane `lanes[i]` of the
    /// shuffle's two operands side by side, or is poison for `None`.
    pub fn shuffle_mask(&self, lanes: impl IntoIterator<Item = Option<u32>>) -> VectorValue<'ctx> {
        let i32_type = self.context.i32_type();
        let lanes: Vec<_> = lanes
            .into_iter()
            .map(|lane| match lane {
                Some(lane) => i32_type.const_int(u64::from(lane), false),
                None => i32_type.get_poison(),
            })
            .collect();
        VectorType::const_vector(&lanes)
    }

    /// Lanes `from..from + count` of `v` as a vector of `count` lanes (a shuffle, which is a
    /// register renaming when it picks whole registers of a wide vector).
    pub fn lanes_of(
        &self,
        v: VectorValue<'ctx>,
        from: u32,
        count: u32,
    ) -> Result<VectorValue<'ctx>> {
        let mask = self.shuffle_mask((from..from + count).map(Some));
        self.builder
            .build_shuffle_vector(v, v.get_type().get_poison(), mask, "lanes")
            .map_err(self.err())
    }

    /// `v`'s lanes folded by halves down to `width` lanes (a power of two, at most `v`'s):
    /// `op(low half, high half)` at each step, a tree of `log2(lanes / width)` operations.
    pub fn fold_halves(
        &self,
        mut v: VectorValue<'ctx>,
        width: u32,
        op: impl Fn(VectorValue<'ctx>, VectorValue<'ctx>) -> Result<VectorValue<'ctx>>,
    ) -> Result<VectorValue<'ctx>> {
        while v.get_type().get_size() > width {
            let half = v.get_type().get_size() / 2;
            v = op(self.lanes_of(v, 0, half)?, self.lanes_of(v, half, half)?)?;
        }
        Ok(v)
    }

    /// Runs `f` with a view of this kernel whose vectors have `lanes` lanes (a multiple of the
    /// kernel's), emitting where the builder is; the builder continues after what `f` emitted.
    ///
    /// Vector math on a vector several registers wide is legalised into the same operation on
    /// each register, one after another: the registers' dependency chains interleave, which a
    /// long chain (a GELU's forty operations) needs for the out-of-order core to overlap them
    /// (as separate calls, each chain's operations come in a block of their own, and the
    /// scheduler's window holds only two or three chains).
    pub fn with_lanes<T>(&self, lanes: u32, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let view = KernelBuilder {
            context: self.context,
            module: self.module,
            builder: self.context.create_builder(),
            target: self.target,
            function: self.function,
            name: self.name.clone(),
            lanes,
        };
        view.builder.position_at_end(self.current_block()?);
        let out = f(&view)?;
        self.builder.position_at_end(view.current_block()?);
        Ok(out)
    }

    /// The kernel's `n`-th parameter, which must be a pointer.
    pub fn ptr_param(&self, n: u32) -> Result<PointerValue<'ctx>> {
        match self.function.get_nth_param(n) {
            Some(BasicValueEnum::PointerValue(p)) => Ok(p),
            _ => Err(self.internal("no pointer parameter at this index")),
        }
    }

    /// The kernel's `n`-th parameter, which must be an integer.
    pub fn int_param(&self, n: u32) -> Result<IntValue<'ctx>> {
        match self.function.get_nth_param(n) {
            Some(BasicValueEnum::IntValue(i)) => Ok(i),
            _ => Err(self.internal("no integer parameter at this index")),
        }
    }

    /// An [`Error::Internal`] naming this kernel.
    pub fn internal(&self, message: &'static str) -> Error {
        Error::Internal {
            function: self.name.clone(),
            message,
        }
    }

    /// A new builder at the start of the kernel's entry block, where stack slots go (an
    /// `alloca` there is promoted to registers by LLVM, and runs once per call).
    pub fn entry_builder(&self) -> Result<Builder<'ctx>> {
        let entry = self
            .function()
            .get_first_basic_block()
            .ok_or_else(|| self.internal("the kernel has no entry block"))?;
        let b = self.context.create_builder();
        match entry.get_first_instruction() {
            Some(first) => b.position_before(&first),
            None => b.position_at_end(entry),
        }
        Ok(b)
    }

    /// The block the builder is positioned in.
    pub fn current_block(&self) -> Result<inkwell::basic_block::BasicBlock<'ctx>> {
        self.builder
            .get_insert_block()
            .ok_or_else(|| self.internal("the builder is not positioned in a block"))
    }

    /// `<lanes x float>`.
    pub fn f32_vector(&self) -> VectorType<'ctx> {
        self.context.f32_type().vec_type(self.lanes)
    }

    /// Wraps a builder error with this kernel's name.
    pub fn err(&self) -> impl FnOnce(inkwell::builder::BuilderError) -> Error + '_ {
        Error::builder(&self.name)
    }

    /// Declares an overloaded LLVM intrinsic for the given types.
    pub fn intrinsic(
        &self,
        name: &'static str,
        types: &[BasicTypeEnum<'ctx>],
    ) -> Result<FunctionValue<'ctx>> {
        let missing = || Error::Intrinsic {
            name,
            types: types
                .iter()
                .map(|t| t.print_to_string().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        Intrinsic::find(name)
            .and_then(|intrinsic| intrinsic.get_declaration(self.module, types))
            .ok_or_else(missing)
    }

    /// Calls `function` and returns its value, which must not be void.
    pub fn call(
        &self,
        function: FunctionValue<'ctx>,
        args: &[BasicMetadataValueEnum<'ctx>],
        name: &str,
    ) -> Result<BasicValueEnum<'ctx>> {
        let call = self
            .builder
            .build_call(function, args, name)
            .map_err(self.err())?;
        call.try_as_basic_value()
            .basic()
            .ok_or_else(|| self.internal("a call expected to return a value returned void"))
    }

    /// `&base[index]` for an `f32` buffer.
    pub fn f32_element_ptr(
        &self,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
    ) -> Result<PointerValue<'ctx>> {
        // SAFETY: inkwell marks GEP unsafe because an out-of-bounds index is undefined behaviour
        // in the emitted code; every caller indexes within the `n` elements the kernel was given.
        unsafe {
            self.builder
                .build_in_bounds_gep(self.context.f32_type(), base, &[index], "elt")
                .map_err(self.err())
        }
    }

    /// `<lanes x i1>`: which lanes of the vector at `index` are below `n` (needs `index < n`).
    pub fn tail_mask(&self, index: IntValue<'ctx>, n: IntValue<'ctx>) -> Result<VectorValue<'ctx>> {
        let b = &self.builder;
        let i32_type = self.context.i32_type();
        let remaining = b.build_int_sub(n, index, "remaining").map_err(self.err())?;
        let remaining = b
            .build_int_truncate(remaining, i32_type, "remaining32")
            .map_err(self.err())?;
        let iota: Vec<_> = (0..self.lanes)
            .map(|lane| i32_type.const_int(u64::from(lane), false))
            .collect();
        let iota = VectorType::const_vector(&iota);
        let limit = self.splat(remaining.into(), "limit")?;
        b.build_int_compare(IntPredicate::SLT, iota, limit, "mask")
            .map_err(self.err())
    }

    /// A vector with `lanes` copies of a scalar.
    pub fn splat(&self, scalar: BasicValueEnum<'ctx>, name: &str) -> Result<VectorValue<'ctx>> {
        let b = &self.builder;
        let vector_type = match scalar.get_type() {
            BasicTypeEnum::IntType(t) => t.vec_type(self.lanes),
            BasicTypeEnum::FloatType(t) => t.vec_type(self.lanes),
            BasicTypeEnum::PointerType(t) => t.vec_type(self.lanes),
            _ => return Err(self.internal("only integers, floats and pointers can be splat")),
        };
        let zero = self.context.i32_type().const_zero();
        let one = b
            .build_insert_element(vector_type.get_poison(), scalar, zero, name)
            .map_err(self.err())?;
        let zeros = self.context.i32_type().vec_type(self.lanes).const_zero();
        b.build_shuffle_vector(one, vector_type.get_poison(), zeros, name)
            .map_err(self.err())
    }

    /// Loads the `f32` vector at `&base[index]`: whole, or only the lanes of `mask` (others 0).
    pub fn load_f32(
        &self,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
        mask: Option<VectorValue<'ctx>>,
    ) -> Result<VectorValue<'ctx>> {
        let ptr = self.f32_element_ptr(base, index)?;
        let vector_type = self.f32_vector();
        let Some(mask) = mask else {
            let value = self
                .builder
                .build_load(vector_type, ptr, "v")
                .map_err(self.err())?;
            self.set_f32_alignment(value.as_instruction_value())?;
            return Ok(value.into_vector_value());
        };
        let load = self.intrinsic(
            "llvm.masked.load",
            &[vector_type.into(), ptr.get_type().into()],
        )?;
        let align = self
            .context
            .i32_type()
            .const_int(u64::from(F32_ALIGN), false);
        let value = self.call(
            load,
            &[
                ptr.into(),
                align.into(),
                mask.into(),
                vector_type.const_zero().into(),
            ],
            "v",
        )?;
        Ok(value.into_vector_value())
    }

    /// Stores the `f32` vector `value` at `&base[index]`: whole, or only the lanes of `mask`.
    pub fn store_f32(
        &self,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
        value: VectorValue<'ctx>,
        mask: Option<VectorValue<'ctx>>,
    ) -> Result<()> {
        let ptr = self.f32_element_ptr(base, index)?;
        let Some(mask) = mask else {
            let store = self.builder.build_store(ptr, value).map_err(self.err())?;
            return self.set_f32_alignment(Some(store));
        };
        let store = self.intrinsic(
            "llvm.masked.store",
            &[value.get_type().into(), ptr.get_type().into()],
        )?;
        let align = self
            .context
            .i32_type()
            .const_int(u64::from(F32_ALIGN), false);
        self.builder
            .build_call(
                store,
                &[value.into(), ptr.into(), align.into(), mask.into()],
                "",
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn set_f32_alignment(&self, instruction: Option<InstructionValue<'ctx>>) -> Result<()> {
        match instruction.map(|i| i.set_alignment(F32_ALIGN)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.internal("could not set the alignment of a load or store")),
        }
    }

    /// `a * b + c` on vectors: one fused `llvm.fma` when the target has FMA, else a multiply
    /// and an add, each rounded. Kernels document which rounding their results have.
    pub fn mul_add(
        &self,
        a: VectorValue<'ctx>,
        b: VectorValue<'ctx>,
        c: VectorValue<'ctx>,
    ) -> Result<VectorValue<'ctx>> {
        if self.target.has_fma() {
            let fma = self.intrinsic("llvm.fma", &[a.get_type().into()])?;
            return Ok(self
                .call(fma, &[a.into(), b.into(), c.into()], "fma")?
                .into_vector_value());
        }
        let product = self
            .builder
            .build_float_mul(a, b, "mul")
            .map_err(self.err())?;
        self.builder
            .build_float_add(product, c, "add")
            .map_err(self.err())
    }

    /// The `i64` constant `value`.
    pub fn i64_const(&self, value: i64) -> IntValue<'ctx> {
        // The cast keeps the bits; `sign_extend` makes LLVM read them as a signed value.
        self.context.i64_type().const_int(value as u64, true)
    }

    /// The `f32` scalar constant `value`.
    pub fn f32_const(&self, value: f32) -> FloatValue<'ctx> {
        self.context.f32_type().const_float(f64::from(value))
    }

    /// A constant vector with every lane `value`.
    pub fn f32_splat_const(&self, value: f32) -> VectorValue<'ctx> {
        let lanes = vec![self.f32_const(value); self.lanes as usize];
        VectorType::const_vector(&lanes)
    }

    /// The smaller of two signed integers.
    pub fn min_i64(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b_ = &self.builder;
        let less = b_
            .build_int_compare(IntPredicate::SLT, a, b, "lt")
            .map_err(self.err())?;
        Ok(b_
            .build_select(less, a, b, "min")
            .map_err(self.err())?
            .into_int_value())
    }

    /// The larger of two signed integers.
    pub fn max_i64(&self, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b_ = &self.builder;
        let greater = b_
            .build_int_compare(IntPredicate::SGT, a, b, "gt")
            .map_err(self.err())?;
        Ok(b_
            .build_select(greater, a, b, "max")
            .map_err(self.err())?
            .into_int_value())
    }

    /// Emits `for (i = start; i < end; i += step) body(i)` and leaves the builder after the loop.
    ///
    /// `step` must be positive. The body may emit blocks of its own; it must leave the builder
    /// in a block without a terminator, from which the loop continues.
    pub fn for_loop(
        &self,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        step: IntValue<'ctx>,
        name: &str,
        body: impl FnOnce(&Self, IntValue<'ctx>) -> Result<()>,
    ) -> Result<()> {
        let b = &self.builder;
        let entry = self.current_block()?;
        let header = self
            .context
            .append_basic_block(self.function, &format!("{name}.header"));
        let body_block = self
            .context
            .append_basic_block(self.function, &format!("{name}.body"));
        let exit = self
            .context
            .append_basic_block(self.function, &format!("{name}.exit"));
        b.build_unconditional_branch(header).map_err(self.err())?;

        b.position_at_end(header);
        let phi = b
            .build_phi(self.context.i64_type(), name)
            .map_err(self.err())?;
        let i = phi.as_basic_value().into_int_value();
        let more = b
            .build_int_compare(IntPredicate::SLT, i, end, "more")
            .map_err(self.err())?;
        b.build_conditional_branch(more, body_block, exit)
            .map_err(self.err())?;

        b.position_at_end(body_block);
        body(self, i)?;
        let next = b.build_int_nsw_add(i, step, "next").map_err(self.err())?;
        let latch = self.current_block()?;
        b.build_unconditional_branch(header).map_err(self.err())?;
        phi.add_incoming(&[(&start, entry), (&next, latch)]);

        b.position_at_end(exit);
        Ok(())
    }

    /// Emits `if (cond) then() else otherwise()` and leaves the builder after both. Each arm
    /// may emit blocks of its own and must leave the builder in a block without a terminator.
    pub fn if_else(
        &self,
        cond: IntValue<'ctx>,
        then: impl FnOnce(&Self) -> Result<()>,
        otherwise: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<()> {
        let b = &self.builder;
        let then_block = self.append_block("if.then");
        let else_block = self.append_block("if.else");
        let join = self.append_block("if.join");
        b.build_conditional_branch(cond, then_block, else_block)
            .map_err(self.err())?;
        b.position_at_end(then_block);
        then(self)?;
        b.build_unconditional_branch(join).map_err(self.err())?;
        b.position_at_end(else_block);
        otherwise(self)?;
        b.build_unconditional_branch(join).map_err(self.err())?;
        b.position_at_end(join);
        Ok(())
    }

    /// Appends a new block to the kernel's function.
    pub fn append_block(&self, name: &str) -> inkwell::basic_block::BasicBlock<'ctx> {
        self.context.append_basic_block(self.function, name)
    }

    /// Emits a loop over `n` elements in steps of [`KernelBuilder::lanes`], then returns.
    ///
    /// `body(kb, index, mask)` emits the work for the vector starting at element `index`:
    /// first for every full vector with `mask` `None`, then once for the last partial vector,
    /// if any, with `mask` the lanes below `n`. A non-positive `n` does nothing.
    pub fn vector_loop(
        &self,
        n: IntValue<'ctx>,
        body: impl FnMut(&Self, IntValue<'ctx>, Option<VectorValue<'ctx>>) -> Result<()>,
    ) -> Result<()> {
        self.vector_loop_in(n, body)?;
        self.builder.build_return(None).map_err(self.err())?;
        Ok(())
    }

    /// The loop of [`KernelBuilder::vector_loop`] inside a larger body: it leaves the
    /// builder in the block after the loop, without a terminator, for more code.
    pub fn vector_loop_in(
        &self,
        n: IntValue<'ctx>,
        mut body: impl FnMut(&Self, IntValue<'ctx>, Option<VectorValue<'ctx>>) -> Result<()>,
    ) -> Result<()> {
        let b = &self.builder;
        let i64_type = self.context.i64_type();
        let step = i64_type.const_int(u64::from(self.lanes), false);
        let zero = i64_type.const_zero();

        let entry = self.current_block()?;
        let header = self
            .context
            .append_basic_block(self.function, "vector.header");
        let full = self
            .context
            .append_basic_block(self.function, "vector.body");
        let tail_check = self.context.append_basic_block(self.function, "tail.check");
        let tail = self.context.append_basic_block(self.function, "tail.body");
        let exit = self.context.append_basic_block(self.function, "exit");

        // The end of the full vectors: n rounded toward zero to a multiple of the width.
        let rem = b
            .build_int_signed_rem(n, step, "n.rem")
            .map_err(self.err())?;
        let full_end = b.build_int_sub(n, rem, "n.full").map_err(self.err())?;
        b.build_unconditional_branch(header).map_err(self.err())?;

        b.position_at_end(header);
        let index = b.build_phi(i64_type, "i").map_err(self.err())?;
        let i = index.as_basic_value().into_int_value();
        let more = b
            .build_int_compare(IntPredicate::SLT, i, full_end, "more")
            .map_err(self.err())?;
        b.build_conditional_branch(more, full, tail_check)
            .map_err(self.err())?;

        b.position_at_end(full);
        body(self, i, None)?;
        let next = b.build_int_nsw_add(i, step, "i.next").map_err(self.err())?;
        let latch = self.current_block()?;
        b.build_unconditional_branch(header).map_err(self.err())?;
        index.add_incoming(&[(&zero, entry), (&next, latch)]);

        b.position_at_end(tail_check);
        let partial = b
            .build_int_compare(IntPredicate::SLT, i, n, "partial")
            .map_err(self.err())?;
        b.build_conditional_branch(partial, tail, exit)
            .map_err(self.err())?;

        b.position_at_end(tail);
        let mask = self.tail_mask(i, n)?;
        body(self, i, Some(mask))?;
        b.build_unconditional_branch(exit).map_err(self.err())?;

        b.position_at_end(exit);
        Ok(())
    }
}

/// The function `name` of `module`, emitted by `emit` the first time it is asked for: a
/// kernel that several steps call alike (attention's products and packing, whose code
/// depends only on their arguments known when compiled) is compiled once per module.
pub fn function_once<'ctx>(
    module: &inkwell::module::Module<'ctx>,
    name: &str,
    emit: impl FnOnce(&str) -> Result<FunctionValue<'ctx>>,
) -> Result<FunctionValue<'ctx>> {
    match module.get_function(name) {
        Some(function) => Ok(function),
        None => emit(name),
    }
}

/// A private, 64-byte aligned constant global holding `bytes` (packed weights and their
/// per-column tables), named `name`.
pub fn constant_global<'ctx>(
    module: &inkwell::module::Module<'ctx>,
    name: &str,
    bytes: &[u8],
) -> PointerValue<'ctx> {
    let init = module.get_context().const_string(bytes, false);
    let global = module.add_global(init.get_type(), None, name);
    global.set_initializer(&init);
    global.set_constant(true);
    global.set_linkage(inkwell::module::Linkage::Private);
    global.set_unnamed_addr(true);
    global.set_alignment(64);
    global.as_pointer_value()
}
