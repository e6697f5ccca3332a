//! Emitting and linking: files appear whole or not at all, and failures say what went wrong.

mod support;

use std::path::Path;

use support::{build_kernel_so, exported_symbols};
use tcc_codegen::emit::{emit, emit_to_file, link_shared, link_shared_with, EmitKind};
use tcc_codegen::kernels::elementwise::emit_mul_add;
use tcc_codegen::{Context, Error, Target};

/// The names in `dir`, to check that no temporary file is left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_missing_linker_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("k.o");
    std::fs::write(&object, b"not an object").unwrap();
    let out = dir.path().join("model.so");
    let err = link_shared_with("tcc-no-such-cc", &[&object], &out).unwrap_err();
    assert!(matches!(&err, Error::LinkerNotFound { linker, .. } if linker == "tcc-no-such-cc"));
    assert!(err.to_string().contains("tcc-no-such-cc"), "{err}");
    assert_eq!(entries(dir.path()), ["k.o"]);
}

#[test]
fn a_failed_link_reports_stderr_and_keeps_the_old_library() {
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("k.o");
    std::fs::write(&object, b"not an object").unwrap();
    let out = dir.path().join("model.so");
    std::fs::write(&out, b"previous library").unwrap();
    let err = link_shared(&[&object], &out).unwrap_err();
    let Error::LinkFailed {
        stderr,
        out: failed,
        ..
    } = &err
    else {
        panic!("expected LinkFailed, got {err:?}");
    };
    assert_eq!(failed, &out);
    assert!(!stderr.is_empty(), "the linker's complaint is kept");
    assert!(err.to_string().contains("model.so"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous library");
    assert_eq!(entries(dir.path()), ["k.o", "model.so"]);
}

#[test]
fn several_objects_link_into_one_library() {
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut objects = Vec::new();
    for name in ["first_kernel", "second_kernel"] {
        let context = Context::create();
        let module = context.create_module(name);
        emit_mul_add(&module, &target, name).unwrap();
        let object = dir.path().join(format!("{name}.o"));
        emit_to_file(&module, &target, EmitKind::Object, &object).unwrap();
        objects.push(object);
    }
    let out = dir.path().join("model.so");
    link_shared(&objects, &out).unwrap();
    let symbols = exported_symbols(&out);
    for name in ["first_kernel", "second_kernel"] {
        assert!(
            symbols.iter().any(|s| s == name),
            "{name} not in {symbols:?}"
        );
    }
    assert_eq!(
        entries(dir.path()),
        ["first_kernel.o", "model.so", "second_kernel.o"]
    );
}

#[test]
fn linking_replaces_an_existing_library() {
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("libkernel.so"), b"previous library").unwrap();
    let so = build_kernel_so(&target, dir.path(), "kernel", None);
    assert_eq!(&std::fs::read(&so).unwrap()[..4], b"\x7fELF");
    assert!(exported_symbols(&so).iter().any(|s| s == "kernel"));
    assert_eq!(entries(dir.path()), ["kernel.o", "libkernel.so"]);
}

#[test]
fn an_invalid_module_fails_verification_by_name() {
    let target = Target::host().unwrap();
    let context = Context::create();
    let module = context.create_module("broken_module");
    let function = module.add_function(
        "no_terminator",
        context.void_type().fn_type(&[], false),
        None,
    );
    context.append_basic_block(function, "entry");
    for kind in EmitKind::ALL {
        let err = emit(&module, &target, kind).unwrap_err();
        assert!(
            matches!(&err, Error::Verify { module, .. } if module == "broken_module"),
            "{err:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.o");
    assert!(emit_to_file(&module, &target, EmitKind::Object, &path).is_err());
    assert!(
        entries(dir.path()).is_empty(),
        "a failed emit left {:?}",
        entries(dir.path())
    );
}

#[test]
fn every_kind_is_written_to_a_file() {
    let target = Target::named("x86-64-v3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for kind in EmitKind::ALL {
        let context = Context::create();
        let module = context.create_module("kinds");
        emit_mul_add(&module, &target, "kernel").unwrap();
        let path = dir.path().join(format!("kernel.{}", kind.extension()));
        emit_to_file(&module, &target, kind, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        match kind {
            EmitKind::Object => assert_eq!(&bytes[..4], b"\x7fELF"),
            EmitKind::Assembly => assert!(String::from_utf8(bytes).unwrap().contains("kernel:")),
            EmitKind::LlvmIr => assert!(String::from_utf8(bytes)
                .unwrap()
                .contains("define void @kernel(")),
        }
    }
    assert_eq!(entries(dir.path()), ["kernel.ll", "kernel.o", "kernel.s"]);
}
