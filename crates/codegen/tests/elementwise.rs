//! The mul-add elementwise kernel, built into shared libraries for several targets, run against
//! a plain Rust loop, and inspected in its assembly and LLVM IR.

mod support;

use support::*;
use tcc_codegen::emit::EmitKind;
use tcc_codegen::Target;

#[test]
fn inputs_make_fused_and_unfused_results_differ() {
    // Otherwise the bit-exact checks could not tell an FMA kernel from a multiply-and-add one.
    let (a, b) = (inputs(1000, 1), inputs(1000, 2));
    let fused = reference(&a, &b, true);
    let unfused = reference(&a, &b, false);
    let differing = fused.iter().zip(&unfused).filter(|(x, y)| x != y).count();
    assert!(differing > 10, "only {differing} of 1000 results differ");
}

#[test]
fn host_kernel_matches_reference() {
    let target = Target::host().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let so = build_kernel_so(&target, dir.path(), "mul_add_host", None);
    check_mul_add(&so, "mul_add_host", target.has_fma());
}

#[test]
fn avx2_kernel_matches_reference() {
    let flags = cpuinfo_flags();
    assert!(
        flags.contains("avx2") && flags.contains("fma"),
        "the AVX2 path must run on this machine, but /proc/cpuinfo lacks avx2 or fma"
    );
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let so = build_kernel_so(&target, dir.path(), "mul_add_avx2", None);
    check_mul_add(&so, "mul_add_avx2", true);
}

#[test]
fn avx512_kernel_matches_reference_where_the_cpu_has_it() {
    let target = Target::named("x86-64-v4").unwrap();
    if !host_has_avx512f() {
        // Without AVX-512 the code cannot run; check instead that it is emitted for zmm.
        let asm = emit_kernel_text(&target, "mul_add_avx512", EmitKind::Assembly);
        assert!(asm.contains("zmm"), "no zmm register in:\n{asm}");
        eprintln!(
            "NOTE: this CPU lacks avx512f: checked the AVX-512 assembly only, did not run it"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = build_kernel_so(&target, dir.path(), "mul_add_avx512", None);
    check_mul_add(&so, "mul_add_avx512", true);
}

#[test]
fn sse_kernel_without_fma_rounds_twice() {
    let target = Target::named("x86-64").unwrap();
    assert!(!target.has_fma());
    let dir = tempfile::tempdir().unwrap();
    let so = build_kernel_so(&target, dir.path(), "mul_add_sse", None);
    check_mul_add(&so, "mul_add_sse", false);
}

#[test]
fn odd_widths_work_because_the_emitter_is_generic() {
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for lanes in [1, 3, 32] {
        let name = format!("mul_add_lanes{lanes}");
        let so = build_kernel_so(&target, dir.path(), &name, Some(lanes));
        check_mul_add(&so, &name, true);
    }
}

#[test]
fn shared_library_exports_the_kernel() {
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let so = build_kernel_so(&target, dir.path(), "mul_add_exported", None);
    let symbols = exported_symbols(&so);
    assert!(
        symbols.iter().any(|s| s == "mul_add_exported"),
        "nm -D lists no `T mul_add_exported`: {symbols:?}"
    );
}

#[test]
fn avx2_assembly_uses_fma_on_ymm_and_no_zmm() {
    let target = Target::named("x86-64-v3").unwrap();
    let asm = emit_kernel_text(&target, "mul_add_avx2", EmitKind::Assembly);
    let code = instructions(&asm);
    assert!(
        code.iter()
            .any(|i| i.starts_with("vfmadd") && i.contains("ymm")),
        "no vfmadd on ymm in:\n{asm}"
    );
    assert!(!asm.contains("zmm"), "AVX2 code uses zmm:\n{asm}");
    assert!(
        code.iter().any(|i| i.starts_with("vmaskmovps")),
        "the AVX2 tail should be a vmaskmovps masked load/store:\n{asm}"
    );
}

#[test]
fn avx512_assembly_uses_zmm() {
    let target = Target::named("x86-64-v4").unwrap();
    let asm = emit_kernel_text(&target, "mul_add_avx512", EmitKind::Assembly);
    let code = instructions(&asm);
    assert!(
        code.iter()
            .any(|i| i.starts_with("vfmadd") && i.contains("zmm")),
        "no vfmadd on zmm in:\n{asm}"
    );
    assert!(
        code.iter().any(|i| i.contains("zmm") && i.contains("{%k")),
        "the AVX-512 tail should use a mask register on zmm:\n{asm}"
    );
}

#[test]
fn sse_assembly_multiplies_and_adds_on_xmm() {
    let target = Target::named("x86-64").unwrap();
    let asm = emit_kernel_text(&target, "mul_add_sse", EmitKind::Assembly);
    let code = instructions(&asm);
    assert!(
        code.iter().any(|i| i.starts_with("mulps")),
        "no mulps:\n{asm}"
    );
    assert!(
        code.iter().any(|i| i.starts_with("addps")),
        "no addps:\n{asm}"
    );
    assert!(
        !code.iter().any(|i| i.contains("ymm")),
        "SSE code uses ymm:\n{asm}"
    );
}

#[test]
fn llvm_ir_has_the_target_width_and_masked_tail() {
    for (cpu, vector) in [("x86-64-v3", "<8 x float>"), ("x86-64-v4", "<16 x float>")] {
        let target = Target::named(cpu).unwrap();
        let ir = emit_kernel_text(&target, "mul_add", EmitKind::LlvmIr);
        assert!(
            ir.contains("define void @mul_add(ptr"),
            "{cpu}: no kernel in:\n{ir}"
        );
        assert!(ir.contains(vector), "{cpu}: no {vector} in:\n{ir}");
        assert!(
            ir.contains("@llvm.masked.load."),
            "{cpu}: no masked load in:\n{ir}"
        );
        assert!(
            ir.contains("@llvm.masked.store."),
            "{cpu}: no masked store in:\n{ir}"
        );
        assert!(ir.contains("@llvm.fma."), "{cpu}: no fma in:\n{ir}");
        let bits = target.vector_bits();
        let preferred = format!("\"prefer-vector-width\"=\"{bits}\"");
        assert!(ir.contains(&preferred), "{cpu}: no {preferred} in:\n{ir}");
        let annotated = format!("\"target-cpu\"=\"{cpu}\"");
        assert!(ir.contains(&annotated), "{cpu}: no {annotated} in:\n{ir}");
    }
}

#[test]
fn object_emission_produces_an_elf_relocatable() {
    let target = Target::named("x86-64-v3").unwrap();
    let object = emit_kernel(&target, "mul_add", None, EmitKind::Object);
    assert_eq!(&object[..4], b"\x7fELF", "not an ELF file");
    // e_type at offset 16, little-endian: 1 is ET_REL, a relocatable object.
    assert_eq!(
        u16::from_le_bytes([object[16], object[17]]),
        1,
        "not a relocatable object"
    );
}
