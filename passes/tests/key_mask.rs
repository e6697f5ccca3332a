//! The key-mask analysis on hand-written masks: the patterns of older exporters, and masks
//! that look alike but are not key-padding masks (each must stay unrecognised).

use tcc_ir::{text, Graph};
use tcc_passes::key_mask::{self, Fact};

fn graph(body: &str) -> Graph {
    let t = format!(
        "graph(%m: i64[batch, seq], %s: f32[batch, 2, seq, seq]) {{\n{body}\n  return %out = %out\n}}\n"
    );
    text::parse(&t, &|_| None).unwrap_or_else(|e| panic!("{e}\n{t}"))
}

/// The fact of the output and whether it is recognised as an additive key mask of `%m` for
/// scores of rank 4.
fn analysed(body: &str) -> (Fact, Option<String>, String) {
    let g = graph(body);
    let facts = key_mask::analyse(&g, &key_mask::mask_candidates(&g));
    let out = g.outputs()[0].1;
    let fact = facts.get(&out).cloned().unwrap_or(Fact::Unknown);
    let got = key_mask::additive_key_mask(&fact, 4).map(str::to_string);
    (fact, got, "m".to_string())
}

#[test]
fn older_exporters_masks_are_recognised() {
    // transformers < 4.36: (1 - mask[:, None, None, :].float()) * finfo.min
    let (fact, got, m) = analysed(
        "  %a = reshape<shape=[batch, 1, 1, seq]>(%m) : i64[batch, 1, 1, seq]
  %f = cast<to=f32>(%a) : f32[batch, 1, 1, seq]
  %one = const [1.0] : f32[]
  %inv = sub(%one, %f) : f32[batch, 1, 1, seq]
  %min = const [-3.4028235e38] : f32[]
  %out = mul(%inv, %min) : f32[batch, 1, 1, seq]",
    );
    assert_eq!(got, Some(m), "{fact:?}");
    // BERT of old: (1.0 - mask) * -10000.0, unsqueezed twice.
    let (fact, got, m) = analysed(
        "  %f = cast<to=f32>(%m) : f32[batch, seq]
  %a = reshape<shape=[batch, 1, seq]>(%f) : f32[batch, 1, seq]
  %b = reshape<shape=[batch, 1, 1, seq]>(%a) : f32[batch, 1, 1, seq]
  %one = const [1.0] : f32[]
  %inv = sub(%one, %b) : f32[batch, 1, 1, seq]
  %k = const [-10000.0] : f32[]
  %out = mul(%inv, %k) : f32[batch, 1, 1, seq]",
    );
    assert_eq!(got, Some(m), "{fact:?}");
    // where(mask == 0, -inf, 0), broadcast over queries by expand.
    let (fact, got, m) = analysed(
        "  %z = const [0] : i64[]
  %e = equal(%m, %z) : bool[batch, seq]
  %a = reshape<shape=[batch, 1, 1, seq]>(%e) : bool[batch, 1, 1, seq]
  %x = expand<shape=[batch, 1, seq, seq]>(%a) : bool[batch, 1, seq, seq]
  %ninf = const [-inf] : f32[]
  %zero = const [0.0] : f32[]
  %out = where(%x, %ninf, %zero) : f32[batch, 1, seq, seq]",
    );
    assert_eq!(got, Some(m), "{fact:?}");
}

#[test]
fn masks_that_are_not_key_padding_masks_are_not_recognised() {
    for (why, body) in [
        (
            "the mask indexes the queries (axis 2), not the keys",
            "  %a = reshape<shape=[batch, 1, seq, 1]>(%m) : i64[batch, 1, seq, 1]
  %f = cast<to=f32>(%a) : f32[batch, 1, seq, 1]
  %one = const [1.0] : f32[]
  %inv = sub(%one, %f) : f32[batch, 1, seq, 1]
  %min = const [-3.4028235e38] : f32[]
  %out = mul(%inv, %min) : f32[batch, 1, seq, 1]",
        ),
        (
            "padded keys get -1, which does not remove them",
            "  %a = reshape<shape=[batch, 1, 1, seq]>(%m) : i64[batch, 1, 1, seq]
  %f = cast<to=f32>(%a) : f32[batch, 1, 1, seq]
  %one = const [1.0] : f32[]
  %out = sub(%f, %one) : f32[batch, 1, 1, seq]",
        ),
        (
            "real keys get 1, not 0",
            "  %a = reshape<shape=[batch, 1, 1, seq]>(%m) : i64[batch, 1, 1, seq]
  %f = cast<to=f32>(%a) : f32[batch, 1, 1, seq]
  %k = const [-10000.0] : f32[]
  %g = mul(%f, %k) : f32[batch, 1, 1, seq]
  %one = const [1.0] : f32[]
  %out = add(%g, %one) : f32[batch, 1, 1, seq]",
        ),
        (
            "a causal condition is and-ed in",
            "  %r = range<dtype=i64, start=0, limit=seq, delta=1> : i64[seq]
  %i = reshape<shape=[1, 1, seq, 1]>(%r) : i64[1, 1, seq, 1]
  %j = reshape<shape=[1, 1, 1, seq]>(%r) : i64[1, 1, 1, seq]
  %c = less_equal(%j, %i) : bool[1, 1, seq, seq]
  %b = cast<to=bool>(%m) : bool[batch, seq]
  %k = reshape<shape=[batch, 1, 1, seq]>(%b) : bool[batch, 1, 1, seq]
  %a = and(%c, %k) : bool[batch, 1, seq, seq]
  %zero = const [0.0] : f32[]
  %min = const [-3.4028235e38] : f32[]
  %out = where(%a, %zero, %min) : f32[batch, 1, seq, seq]",
        ),
        (
            "the flattened mask is read one position off (b * seq + j + 1)",
            "  %b = cast<to=bool>(%m) : bool[batch, seq]
  %flat = reshape<shape=[batch*seq, 1]>(%b) : bool[batch*seq, 1]
  %r = range<dtype=i64, start=1, limit=seq + 1, delta=1> : i64[seq]
  %j = reshape<shape=[1, 1, 1, seq]>(%r) : i64[1, 1, 1, seq]
  %rb = range<dtype=i64, start=0, limit=batch, delta=1> : i64[batch]
  %bb = reshape<shape=[batch, 1, 1, 1]>(%rb) : i64[batch, 1, 1, 1]
  %n = dims<dtype=i64, shape=[1], values=[seq]> : i64[1]
  %bs = mul(%bb, %n) : i64[batch, 1, 1, 1]
  %ix = add(%j, %bs) : i64[batch, 1, 1, seq]
  %g = gather<axis=0>(%flat, %ix) : bool[batch, 1, 1, seq, 1]
  %k = reshape<shape=[batch, 1, 1, seq]>(%g) : bool[batch, 1, 1, seq]
  %zero = const [0.0] : f32[]
  %min = const [-3.4028235e38] : f32[]
  %out = where(%k, %zero, %min) : f32[batch, 1, 1, seq]",
        ),
        (
            "the scores themselves are added in",
            "  %a = reshape<shape=[batch, 1, 1, seq]>(%m) : i64[batch, 1, 1, seq]
  %f = cast<to=f32>(%a) : f32[batch, 1, 1, seq]
  %out = add(%f, %s) : f32[batch, 2, seq, seq]",
        ),
    ] {
        let (fact, got, _) = analysed(body);
        assert_eq!(got, None, "{why}: recognised as a key mask ({fact:?})");
    }
}
