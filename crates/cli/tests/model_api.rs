//! `tcc-model`, the Rust API over compiled model libraries, on the tiny-encoder compiled by the
//! built `tcc`: the interface it reads, runs on slices and ndarray views into session-owned
//! and caller buffers checked against ONNX Runtime's outputs, each typed error, and sessions
//! on several threads.

mod support;

use support::{compiled_tiny, tiny, PREFIX};
use tcc_model::{DType, Dim, Error, Model, Session, TensorRef};

fn model() -> Model {
    let so = compiled_tiny(None).join(format!("lib{PREFIX}.so"));
    Model::load(&so).expect("load the tiny-encoder library")
}

/// An input by name: its dims and its elements.
type Input = (String, Vec<usize>, Vec<i64>);

/// The example's inputs, and ONNX Runtime's output for them: its dims and elements.
fn case() -> (Vec<Input>, Vec<usize>, Vec<f32>) {
    let inputs = tcc_npz::read_npz(&tiny("inputs.npz")).expect("inputs.npz");
    let inputs = inputs
        .into_iter()
        .map(|(name, t)| {
            let data = t.as_slice::<i64>().expect("i64 inputs").to_vec();
            (name, t.shape().to_vec(), data)
        })
        .collect();
    let expected = tcc_npz::read_npz(&tiny("expected.npz")).expect("expected.npz");
    let (_, t) = expected
        .iter()
        .find(|(name, _)| name == "last_hidden_state")
        .expect("expected.npz holds last_hidden_state");
    let data = t.as_slice::<f32>().expect("f32 output").to_vec();
    (inputs, t.shape().to_vec(), data)
}

/// The inputs of `case()` in model order.
fn ordered<'a>(model: &Model, inputs: &'a [Input]) -> Vec<TensorRef<'a>> {
    let named = inputs.iter().map(|(name, dims, data)| {
        (
            name.as_str(),
            TensorRef::new(data, dims).expect("dims hold the data"),
        )
    });
    model.order(named, false).expect("every input is there")
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "element {i}: {g} vs {w}");
    }
}

#[test]
fn the_interface_is_read_from_the_library() {
    let model = model();
    assert_eq!(model.prefix(), PREFIX);
    let names: Vec<&str> = model.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask"]);
    for input in model.inputs() {
        assert_eq!(input.dtype, DType::I64);
        assert_eq!(
            input.dims,
            [Dim::Symbol("batch".into()), Dim::Symbol("seq".into())]
        );
        assert_eq!(input.to_string(), "i64[batch, seq]");
    }
    let output = &model.outputs()[0];
    assert_eq!(
        (output.name.as_str(), output.dtype),
        ("last_hidden_state", DType::F32)
    );
    assert_eq!(output.to_string(), "f32[batch, seq, 32]");
}

#[test]
fn runs_match_onnx_runtime_in_session_and_caller_buffers() {
    let model = model();
    let (inputs, dims, want) = case();
    let inputs = ordered(&model, &inputs);
    let mut session = model.session(2).expect("a session");
    assert!(session.num_threads() >= 1);
    let outputs = session.run(&inputs).expect("run");
    assert_eq!(outputs.len(), 1);
    let out = outputs.by_name("last_hidden_state").expect("by name");
    assert_eq!(out.dims(), dims.as_slice());
    let got = out.as_slice::<f32>().expect("f32").to_vec();
    assert_close(&got, &want);
    assert!(matches!(
        out.as_slice::<i64>(),
        Err(Error::OutputDtype {
            asked: DType::I64,
            ..
        })
    ));

    // Into the caller's buffer: too small first (the error gives the size), then exact.
    let mut small = vec![0f32; 4];
    let mut buffers = [bytes_mut(&mut small)];
    match session.run_into(&inputs, &mut buffers) {
        Err(Error::Buffers { needed, .. }) => assert_eq!(needed, [(want.len() * 4) as u64]),
        other => panic!("a small buffer gave {other:?}"),
    }
    let mut mine = vec![0f32; want.len()];
    let out_dims = session
        .run_into(&inputs, &mut [bytes_mut(&mut mine)])
        .expect("run into a buffer");
    assert_eq!(out_dims, [dims]);
    assert_eq!(mine, got, "both runs agree bit for bit");
}

fn bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: f32s viewed as bytes, within the slice.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

#[test]
fn ndarray_views_in_and_out() {
    let model = model();
    let (inputs, dims, want) = case();
    let arrays: Vec<ndarray::ArrayD<i64>> = inputs
        .iter()
        .map(|(_, d, v)| ndarray::ArrayD::from_shape_vec(d.clone(), v.clone()).expect("shape"))
        .collect();
    let refs: Vec<TensorRef> = arrays
        .iter()
        .map(|a| TensorRef::from_array(a.view()).expect("standard layout"))
        .collect();
    let named = inputs.iter().map(|(n, ..)| n.as_str()).zip(refs);
    let ordered = model.order(named, false).expect("order");
    let mut session = model.session(1).expect("a session");
    let outputs = session.run(&ordered).expect("run");
    let view = outputs
        .get(0)
        .expect("one output")
        .view::<f32>()
        .expect("view");
    assert_eq!(view.shape(), dims.as_slice());
    assert_close(view.as_slice().expect("contiguous"), &want);

    // A transposed view is not in C order: refused, not read wrongly.
    let t = arrays[0].t();
    assert!(matches!(
        TensorRef::from_array(t),
        Err(Error::Layout { .. })
    ));
}

#[test]
fn wrong_inputs_are_typed_errors_naming_the_input() {
    let model = model();
    let mut session = model.session(1).expect("a session");
    let ids = vec![1i64; 6];
    let f = vec![1f32; 6];
    let fine = TensorRef::new(&ids, &[2, 3]).expect("2x3");
    // Count.
    let err = session
        .run(std::slice::from_ref(&fine))
        .expect_err("one input of two");
    assert!(
        matches!(
            err,
            Error::InputCount {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    // Dtype.
    let float = TensorRef::new(&f, &[2, 3]).expect("2x3");
    let err = session.run(&[fine.clone(), float]).expect_err("f32 mask");
    assert!(
        matches!(&err, Error::Dtype { name, got: DType::F32, .. } if name == "attention_mask"),
        "{err}"
    );
    assert!(err.to_string().contains("i64[batch, seq]"), "{err}");
    // Rank.
    let flat = TensorRef::new(&ids, &[6]).expect("6");
    let err = session.run(&[flat, fine.clone()]).expect_err("rank 1");
    assert!(
        matches!(&err, Error::Shape { name, .. } if name == "input_ids"),
        "{err}"
    );
    // A symbol bound differently by two inputs.
    let other = TensorRef::new(&ids, &[3, 2]).expect("3x2");
    let err = session
        .run(&[fine.clone(), other])
        .expect_err("batch 2 vs 3");
    assert!(
        err.to_string()
            .contains("`batch` is 3 here but 2 in input `input_ids`"),
        "{err}"
    );
    // Data that does not fill the dims.
    assert!(matches!(
        TensorRef::new(&ids, &[4, 2]),
        Err(Error::Layout { .. })
    ));
    // Names: a missing input, an unknown one.
    let err = model
        .order([("input_ids", fine.clone())], false)
        .expect_err("no mask");
    assert!(
        matches!(&err, Error::MissingInput { name, .. } if name == "attention_mask"),
        "{err}"
    );
    let err = model
        .order(
            [
                ("input_ids", fine.clone()),
                ("token_type_ids", fine.clone()),
            ],
            false,
        )
        .expect_err("unknown name");
    assert!(
        matches!(&err, Error::UnknownInput { name, .. } if name == "token_type_ids"),
        "{err}"
    );
    // A token id out of range: refused by the library itself, with its status and message.
    let big = vec![1_000_000i64; 6];
    let err = session
        .run(&[TensorRef::new(&big, &[2, 3]).expect("2x3"), fine.clone()])
        .expect_err("a token id out of range");
    let Error::Run {
        status, message, ..
    } = &err
    else {
        panic!("not a run error: {err}");
    };
    assert_eq!(
        status.status,
        Some(tcc_model::Status::InvalidArgument),
        "{err}"
    );
    assert!(!message.is_empty(), "{err}");
    // The session still works after a refusal.
    session
        .run(&[fine.clone(), fine])
        .expect("a good run after a bad one");
}

#[test]
fn an_empty_batch_runs() {
    let model = model();
    let mut session = model.session(1).expect("a session");
    let empty: Vec<i64> = Vec::new();
    let input = TensorRef::new(&empty, &[0, 5]).expect("0x5");
    let outputs = session
        .run(&[input.clone(), input])
        .expect("an empty batch");
    let out = outputs.get(0).expect("one output");
    assert_eq!(out.dims(), [0, 5, 32]);
    assert!(out.as_slice::<f32>().expect("f32").is_empty());
}

#[test]
fn files_that_are_not_model_libraries_are_refused() {
    let dir = support::scratch("not-models");
    let missing = dir.join("missing.so");
    assert!(matches!(Model::load(&missing), Err(Error::NotFound { .. })));
    let text = dir.join("text.so");
    std::fs::write(&text, b"not a library").expect("write");
    let err = Model::load(&text).expect_err("a text file");
    assert!(matches!(err, Error::NotAModel { .. }), "{err}");
    assert!(err.to_string().contains("text.so"), "{err}");
    let so = compiled_tiny(None).join(format!("lib{PREFIX}.so"));
    let err = Model::load_with_prefix(&so, Some("other")).expect_err("a wrong prefix");
    assert!(err.to_string().contains("other_session_create"), "{err}");
}

#[test]
fn sessions_run_concurrently_on_threads_and_move_between_them() {
    let model = model();
    let (inputs, _, want) = case();
    let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let model = model.clone();
                let inputs = &inputs;
                scope.spawn(move || {
                    let mut session = model.session(1).expect("a session");
                    let ordered = ordered(&model, inputs);
                    let mut last = Vec::new();
                    for _ in 0..5 {
                        let outputs = session.run(&ordered).expect("run");
                        last = outputs
                            .get(0)
                            .expect("out")
                            .as_slice::<f32>()
                            .expect("f32")
                            .to_vec();
                    }
                    last
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for got in &results {
        assert_close(got, &want);
    }
    // A session made on one thread runs on another.
    let session: Session = model.session(1).expect("a session");
    let moved = std::thread::spawn(move || {
        let mut session = session;
        let ordered = ordered(&model, &inputs);
        let outputs = session.run(&ordered).expect("run");
        outputs
            .get(0)
            .expect("out")
            .as_slice::<f32>()
            .expect("f32")
            .to_vec()
    })
    .join()
    .expect("no panic");
    assert_close(&moved, &want);
}
