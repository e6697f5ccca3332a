//! A library that holds several forms of a model (`lower::compile_forms`) picks one per call
//! by a symbol's value: each run computes what the form for its size computes, is sized by
//! that form's memory plan and checked by that form's size checks, whose messages the error
//! names. The forms here compute different things on purpose, so that a wrong pick shows.

#[path = "support/lowered.rs"]
mod lowered;

use lowered::{random_f32, Library};
use tcc_codegen::lower::Dispatch;
use tcc_ir::Tensor;

/// Form 0 (`n < 5`) is `x + 1` through a reshape that needs `n` even; form 1 (`5 <= n < 9`)
/// is `x * 2`, through a reshape that needs `n` a multiple of 3 and an intermediate of
/// `n * n` elements (a larger arena); form 2 (`n >= 9`) is `x - 3`.
const FORMS: [&str; 3] = [
    r#"
graph(%x: f32[n, 4]) {
  %h = reshape<shape=[floordiv(4*n, 8), 8]>(%x) : f32[floordiv(4*n, 8), 8]
  %b = reshape<shape=[n, 4]>(%h) : f32[n, 4]
  %one = const [1.0] : f32[]
  %y = add(%b, %one) : f32[n, 4]
  return %y = %y
}
"#,
    r#"
graph(%x: f32[n, 4]) {
  %t = transpose<perm=[1, 0]>(%x) : f32[4, n]
  %s = matmul(%x, %t) : f32[n, n]
  %z = reduce_sum<axes=[1], keep_dims=true>(%s) : f32[n, 1]
  %h = reshape<shape=[floordiv(4*n, 3), 3]>(%x) : f32[floordiv(4*n, 3), 3]
  %b = reshape<shape=[n, 4]>(%h) : f32[n, 4]
  %two = const [2.0] : f32[]
  %zero = const [0.0] : f32[]
  %w = mul(%z, %zero) : f32[n, 1]
  %m = mul(%b, %two) : f32[n, 4]
  %y = add(%m, %w) : f32[n, 4]
  return %y = %y
}
"#,
    r#"
graph(%x: f32[n, 4]) {
  %three = const [3.0] : f32[]
  %y = sub(%x, %three) : f32[n, 4]
  return %y = %y
}
"#,
];

#[test]
fn a_library_of_forms_runs_the_form_of_each_size() {
    let graphs: Vec<tcc_ir::Graph> = FORMS
        .iter()
        .map(|t| tcc_ir::text::parse(t, &|_| None).unwrap_or_else(|e| panic!("{e}\n{t}")))
        .collect();
    let refs: Vec<&tcc_ir::Graph> = graphs.iter().collect();
    let dispatch = Dispatch {
        symbol: "n".into(),
        bounds: vec![5, 9],
        notes: vec!["plus one".into(), "times two".into(), "minus three".into()],
    };
    let dir = std::env::temp_dir().join(format!("tcc-forms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for target in lowered::TARGETS {
        let (lib, compiled) = Library::build_forms(&refs, Some(&dispatch), target, &dir)
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(compiled.forms.len(), 3);
        for (k, note) in [
            "n < 5: plus one",
            "5 <= n < 9: times two",
            "n >= 9: minus three",
        ]
        .iter()
        .enumerate()
        {
            assert!(
                compiled.header.contains(&format!("form {k}: {note}")),
                "the header does not list form {k}:\n{}",
                compiled.header
            );
        }
        let session = lib.session(2);
        let expect = |n: usize, f: fn(f32) -> f32| {
            let x = random_f32(&[n, 4], &format!("forms{n}"), -2.0, 2.0);
            let got = session
                .run(&[&x], 1)
                .unwrap_or_else(|e| panic!("{target}: n = {n}: {e}"));
            let want: Vec<f32> = x.as_slice::<f32>().unwrap().iter().map(|&v| f(v)).collect();
            let want = Tensor::from_vec(vec![n, 4], want).unwrap();
            assert_eq!(got[0], want, "{target}: n = {n}");
        };
        // Each size through its own form, in an order that moves between them.
        for n in [2, 6, 4, 12, 9] {
            match dispatch.form(n as i64) {
                0 => expect(n, |v| v + 1.0),
                1 => expect(n, |v| v * 2.0),
                _ => expect(n, |v| v - 3.0),
            }
        }
        // A size check of form 0 (n odd) and of form 1 (n = 5, not a multiple of 3): each
        // fails with its own form's message (the indices of form 1's checks follow form 0's).
        let fail = |n: usize| {
            let x = random_f32(&[n, 4], "bad", -1.0, 1.0);
            session
                .run(&[&x], 1)
                .expect_err(&format!("{target}: n = {n} should fail its size check"))
        };
        let (e0, e1) = (fail(3), fail(5));
        assert!(
            e0.contains("12") && e0.contains("reshape"),
            "{target}: {e0}"
        );
        assert!(
            e1.contains("20") && e1.contains("reshape"),
            "{target}: {e1}"
        );
        assert!(
            e0.contains("floordiv(4*n, 8)") && e1.contains("floordiv(4*n, 3)"),
            "{target}: the messages do not name their forms' reshapes:\n{e0}\n{e1}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
