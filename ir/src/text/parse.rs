//! The parser of the text form.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{split_top_level, Constant, Op};
use crate::shape::{Shape, TensorType};
use crate::tensor::{Tensor, TensorData};
use half::{bf16, f16};
use std::collections::HashMap;
use std::sync::Arc;

/// Parses the text form described in the [module docs](super). `weights`
/// supplies the values of constants that the printer elided by name.
///
/// Fails with [`Error::Parse`] and the line at fault on a syntax error, an
/// unknown op or value name, a bad attribute, a name defined twice, a missing
/// weight, or a stated type that differs from the inferred one.
pub fn parse(text: &str, weights: &dyn Fn(&str) -> Option<Tensor>) -> Result<Graph> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let mut p = Parser {
        graph: Graph::new(),
        values: HashMap::new(),
        weights,
    };

    let Some((n, header)) = lines.next() else {
        return Err(parse_err(1, "expected `graph(...) {`, found nothing"));
    };
    p.header(&mut Cursor::new(header, n))?;

    let mut outputs: Vec<(usize, String, NodeId)> = Vec::new();
    let mut last = n;
    let mut closed = false;
    for (n, line) in lines.by_ref() {
        last = n;
        let mut c = Cursor::new(line, n);
        if line == "}" {
            closed = true;
            break;
        } else if line.starts_with("return") && !line.starts_with("return_") {
            c.keyword("return")?;
            c.expect('%')?;
            let label = c.name()?;
            c.expect('=')?;
            let id = p.value_ref(&mut c)?;
            c.end()?;
            if outputs.iter().any(|(_, l, _)| *l == label) {
                return Err(c.err(format!("output `{label}` is returned twice")));
            }
            outputs.push((n, label, id));
        } else if line.starts_with('%') {
            if !outputs.is_empty() {
                return Err(c.err("a node follows the `return` lines"));
            }
            p.node(&mut c)?;
        } else {
            return Err(c.err(format!(
                "expected a node `%name = ...`, `return` or `}}`, found `{line}`"
            )));
        }
    }
    if !closed {
        return Err(parse_err(last + 1, "expected `}` closing the graph"));
    }
    if let Some((n, line)) = lines.next() {
        return Err(parse_err(
            n,
            format!("unexpected `{line}` after the closing `}}`"),
        ));
    }
    for (_, label, id) in outputs {
        p.graph.add_output(&label, id);
    }
    Ok(p.graph)
}

fn parse_err(line: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        line,
        message: message.into(),
    }
}

struct Parser<'w> {
    graph: Graph,
    values: HashMap<String, NodeId>,
    weights: &'w dyn Fn(&str) -> Option<Tensor>,
}

impl Parser<'_> {
    /// `graph(%a: f32[n], %"b.1": i64[]) {`
    fn header(&mut self, c: &mut Cursor) -> Result<()> {
        c.keyword("graph")?;
        c.expect('(')?;
        if !c.eat(')') {
            loop {
                c.expect('%')?;
                let name = c.name()?;
                c.expect(':')?;
                let ty = c.ty()?;
                self.define(c, &name)?;
                let id = self.graph.add_input(&name, ty);
                self.values.insert(name, id);
                if c.eat(')') {
                    break;
                }
                c.expect(',')?;
            }
        }
        c.expect('{')?;
        c.end()
    }

    fn define(&self, c: &Cursor, name: &str) -> Result<()> {
        if self.values.contains_key(name) {
            return Err(c.err(format!("duplicate name `%{name}`")));
        }
        Ok(())
    }

    fn value_ref(&self, c: &mut Cursor) -> Result<NodeId> {
        c.expect('%')?;
        let name = c.name()?;
        self.values
            .get(&name)
            .copied()
            .ok_or_else(|| c.err(format!("unknown value `%{name}`")))
    }

    /// `%3 = op<attrs>(operands) : type`, or a constant.
    fn node(&mut self, c: &mut Cursor) -> Result<()> {
        c.expect('%')?;
        let name = c.name()?;
        self.define(c, &name)?;
        c.expect('=')?;
        let op_name = c.word();
        if op_name.is_empty() {
            return Err(c.err("expected an op name after `=`"));
        }
        let (op, operands) = if op_name == "const" {
            (self.constant(c)?, Vec::new())
        } else {
            if op_name == "input" {
                return Err(c.err("inputs are declared in the `graph(...)` header"));
            }
            let mut attrs = Vec::new();
            if c.peek() == Some('<') {
                let inner = c.balanced('<', '>')?;
                for item in split_top_level(inner) {
                    let (k, v) = item.split_once('=').ok_or_else(|| {
                        c.err(format!(
                            "attribute `{item}` of `{op_name}` is not `key=value`"
                        ))
                    })?;
                    attrs.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let op = Op::from_parts(op_name, &attrs).map_err(|m| c.err(m))?;
            // `from_parts` reads the keys it needs; anything else is a mistake.
            let known = op.attrs();
            for (i, (k, _)) in attrs.iter().enumerate() {
                if !known.iter().any(|(name, _)| name == k) {
                    return Err(c.err(format!("op `{op_name}` has no attribute `{k}`")));
                }
                if attrs[..i].iter().any(|(prev, _)| prev == k) {
                    return Err(c.err(format!("attribute `{k}` of `{op_name}` is given twice")));
                }
            }
            let mut operands = Vec::new();
            if c.eat('(') && !c.eat(')') {
                loop {
                    operands.push(self.value_ref(c)?);
                    if c.eat(')') {
                        break;
                    }
                    c.expect(',')?;
                }
            }
            (op, operands)
        };
        let stated = match &op {
            // A constant's type was read with its values.
            Op::Const(c) => TensorType::new(c.value.dtype(), Shape::fixed(c.value.shape())),
            _ => {
                c.expect(':')?;
                c.ty()?
            }
        };
        c.end()?;
        let id = self
            .graph
            .add(op, &operands)
            .map_err(|e| c.err(e.to_string()))?;
        let inferred = self.graph.ty(id);
        if *inferred != stated {
            return Err(c.err(format!(
                "`%{name}` is stated as {stated} but its type is {inferred}"
            )));
        }
        self.values.insert(name, id);
        Ok(())
    }

    /// `const [1.0, 2.0] : f32[2]` or `const @"name" : f32[8192, 128]`, from
    /// after `const` to the end of the type.
    fn constant(&self, c: &mut Cursor) -> Result<Op> {
        if c.eat('@') {
            let name = c.name()?;
            c.expect(':')?;
            let ty = c.ty()?;
            let value = (self.weights)(&name)
                .ok_or_else(|| c.err(format!("no weight `{name}` was given")))?;
            let got = TensorType::new(value.dtype(), Shape::fixed(value.shape()));
            if got != ty {
                return Err(c.err(format!(
                    "weight `{name}` is stated as {ty} but the given tensor is {got}"
                )));
            }
            return Ok(Op::Const(Constant {
                name: Some(name),
                value: Arc::new(value),
            }));
        }
        if c.peek() != Some('[') {
            return Err(c.err("expected `[values]` or `@\"name\"` after `const`"));
        }
        let inner = c.balanced('[', ']')?;
        c.expect(':')?;
        let ty = c.ty()?;
        let shape = ty
            .shape
            .as_fixed()
            .ok_or_else(|| c.err(format!("a constant's type must be concrete, got {ty}")))?;
        let items = split_top_level(inner);
        let n = crate::shape::checked_numel(&shape)
            .ok_or_else(|| c.err(format!("type {ty} holds more elements than memory can")))?;
        if items.len() != n {
            return Err(c.err(format!(
                "type {ty} holds {n} elements but {} were given",
                items.len()
            )));
        }
        let data = elements(ty.dtype, &items).map_err(|m| c.err(m))?;
        let value = Tensor::new(shape, data).map_err(|m| c.err(m))?;
        Ok(Op::Const(Constant {
            name: None,
            value: Arc::new(value),
        }))
    }
}

/// Parses the printed elements of an inline constant.
fn elements(dtype: DType, items: &[&str]) -> std::result::Result<TensorData, String> {
    fn all<T>(
        items: &[&str],
        f: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> std::result::Result<Vec<T>, String> {
        items.iter().map(|s| f(s)).collect()
    }
    fn int<T: std::str::FromStr>(s: &str, dtype: DType) -> std::result::Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        s.parse::<T>()
            .map_err(|e| format!("bad {dtype} element `{s}`: {e}"))
    }
    fn nan_bits(s: &str) -> Option<std::result::Result<u64, String>> {
        let hex = s.strip_prefix("NaN:0x")?;
        Some(u64::from_str_radix(hex, 16).map_err(|e| format!("bad NaN bits `{s}`: {e}")))
    }
    fn f32_of(s: &str) -> std::result::Result<f32, String> {
        s.parse::<f32>()
            .map_err(|e| format!("bad float element `{s}`: {e}"))
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(all(items, |s| match nan_bits(s) {
            Some(b) => Ok(f32::from_bits(b? as u32)),
            None => f32_of(s),
        })?),
        DType::F64 => TensorData::F64(all(items, |s| match nan_bits(s) {
            Some(b) => Ok(f64::from_bits(b?)),
            None => s
                .parse::<f64>()
                .map_err(|e| format!("bad float element `{s}`: {e}")),
        })?),
        DType::F16 => TensorData::F16(all(items, |s| match nan_bits(s) {
            Some(b) => Ok(f16::from_bits(b? as u16)),
            None => Ok(f16::from_f32(f32_of(s)?)),
        })?),
        DType::BF16 => TensorData::BF16(all(items, |s| match nan_bits(s) {
            Some(b) => Ok(bf16::from_bits(b? as u16)),
            None => Ok(bf16::from_f32(f32_of(s)?)),
        })?),
        DType::I64 => TensorData::I64(all(items, |s| int(s, dtype))?),
        DType::I32 => TensorData::I32(all(items, |s| int(s, dtype))?),
        DType::I8 => TensorData::I8(all(items, |s| int(s, dtype))?),
        DType::U8 => TensorData::U8(all(items, |s| int(s, dtype))?),
        DType::Bool => TensorData::Bool(all(items, |s| match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("bad bool element `{s}`: expected true or false")),
        })?),
    })
}

/// A position in one line of the text.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str, line: usize) -> Cursor<'a> {
        Cursor { s, i: 0, line }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        parse_err(self.line, message)
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.rest().chars().next()
    }

    fn eat(&mut self, ch: char) -> bool {
        if self.peek() == Some(ch) {
            self.i += ch.len_utf8();
            true
        } else {
            false
        }
    }

    fn found(&mut self) -> String {
        match self.peek() {
            None => "the end of the line".into(),
            Some(_) => format!("`{}`", self.rest()),
        }
    }

    fn expect(&mut self, ch: char) -> Result<()> {
        if self.eat(ch) {
            Ok(())
        } else {
            let found = self.found();
            Err(self.err(format!("expected `{ch}`, found {found}")))
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<()> {
        if self.word() == kw {
            Ok(())
        } else {
            Err(self.err(format!("expected `{kw}` at the start of `{}`", self.s)))
        }
    }

    fn end(&mut self) -> Result<()> {
        if self.peek().is_none() {
            Ok(())
        } else {
            Err(self.err(format!(
                "unexpected `{}` at the end of the line",
                self.rest()
            )))
        }
    }

    /// A run of `[A-Za-z0-9_]`, possibly empty.
    fn word(&mut self) -> &'a str {
        self.ws();
        let r = self.rest();
        let n = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        self.i += n;
        &r[..n]
    }

    /// A value, output or weight name: a word or a quoted string.
    fn name(&mut self) -> Result<String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let w = self.word();
        if w.is_empty() {
            let found = self.found();
            return Err(self.err(format!("expected a name, found {found}")));
        }
        Ok(w.to_string())
    }

    /// A string in double quotes, undoing the escapes of [`super::quote`].
    fn quoted(&mut self) -> Result<String> {
        self.expect('"')?;
        let mut out = String::new();
        let mut it = self.rest().char_indices();
        while let Some((k, ch)) = it.next() {
            match ch {
                '"' => {
                    self.i += k + 1;
                    return Ok(out);
                }
                '\\' => match it.next().map(|(_, e)| e) {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') if it.next().map(|(_, b)| b) == Some('{') => {
                        let mut hex = String::new();
                        for (_, h) in it.by_ref() {
                            if h == '}' {
                                break;
                            }
                            hex.push(h);
                        }
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.err(format!("bad escape `\\u{{{hex}}}`")))?;
                        out.push(code);
                    }
                    _ => return Err(self.err("bad escape in a quoted name")),
                },
                ch => out.push(ch),
            }
        }
        Err(self.err("unterminated quoted name"))
    }

    /// From an `open` bracket to its matching `close`, counting `[]`, `()`
    /// and `<>`; returns what lies between.
    fn balanced(&mut self, open: char, close: char) -> Result<&'a str> {
        self.expect(open)?;
        let r = self.rest();
        let mut depth = 0i32;
        for (k, ch) in r.char_indices() {
            match ch {
                '[' | '(' | '<' => depth += 1,
                ']' | ')' | '>' if depth > 0 => depth -= 1,
                c if c == close => {
                    self.i += k + 1;
                    return Ok(&r[..k]);
                }
                _ => {}
            }
        }
        Err(self.err(format!("no `{close}` closes `{open}`")))
    }

    /// A type: `f32[batch, seq, 128]`.
    fn ty(&mut self) -> Result<TensorType> {
        let d = self.word();
        let dtype = DType::from_name(d).ok_or_else(|| {
            if d.is_empty() {
                self.err(format!("expected a type, found `{}`", self.rest()))
            } else {
                self.err(format!("unknown dtype `{d}`"))
            }
        })?;
        if self.peek() != Some('[') {
            return Err(self.err(format!("expected `[dims]` after dtype `{d}`")));
        }
        let inner = self.balanced('[', ']')?;
        let dims = split_top_level(inner)
            .into_iter()
            .map(|s| Dim::parse(s).map_err(|m| self.err(m)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TensorType::new(dtype, dims))
    }
}
