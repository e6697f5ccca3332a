//! Symbolic dimensions: integer polynomials over named symbols.
//!
//! A [`Dim`] is kept in a canonical form, a sum of monomials with non-zero
//! integer coefficients, so that two dims that are equal as polynomials compare
//! equal structurally: `seq * 2 + seq` and `3 * seq` are the same value. What a
//! polynomial cannot say (floor division that does not divide exactly, `min`,
//! `max`, remainders) is kept as an opaque [`Atom`] inside a monomial.
//!
//! Symbols stand for positive sizes bound at run time (`batch`, `seq`); the
//! simplifier assumes every symbol is at least 1, which is what lets
//! `min(seq, 9223372036854775807)` become `seq` and `max(seq - 1, 0)` become
//! `seq - 1`.
//!
//! Coefficient arithmetic wraps at 64 bits rather than panic (`i64::MIN / -1`
//! included): dims come from untrusted models, and a size that large is refused
//! where it would become one (the importer's constant-dim check, the
//! interpreter's budget), not here.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// An indivisible factor of a monomial.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// A named symbol, bound to a size at run time.
    Sym(Arc<str>),
    /// `floordiv(a, b)`: floor division that is not exact as a polynomial.
    FloorDiv(Box<Dim>, Box<Dim>),
    /// `mod(a, b)`: the remainder of floor division, with the sign of `b`.
    Mod(Box<Dim>, Box<Dim>),
    /// `min(a, b)` that the simplifier could not decide.
    Min(Box<Dim>, Box<Dim>),
    /// `max(a, b)` that the simplifier could not decide.
    Max(Box<Dim>, Box<Dim>),
}

/// A product of atoms, sorted; the empty monomial is the constant 1.
type Monomial = Vec<Atom>;

/// A symbolic integer: a canonical polynomial over [`Atom`]s.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dim {
    terms: BTreeMap<Monomial, i64>,
}

/// Constants at or beyond this magnitude are treated as larger than any symbol
/// when deciding `min` and `max`: they are the "until the end" sentinels that
/// exporters write into `Slice`.
const HUGE: i64 = 1 << 40;

impl Dim {
    /// The constant `value`.
    pub fn constant(value: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if value != 0 {
            terms.insert(Vec::new(), value);
        }
        Dim { terms }
    }

    /// The symbol `name`.
    pub fn sym(name: &str) -> Dim {
        Dim::from_atom(Atom::Sym(Arc::from(name)))
    }

    fn from_atom(atom: Atom) -> Dim {
        let mut terms = BTreeMap::new();
        terms.insert(vec![atom], 1);
        Dim { terms }
    }

    /// The value if this dim is a constant.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// True if this dim is the constant `value`.
    pub fn is(&self, value: i64) -> bool {
        self.as_const() == Some(value)
    }

    /// The symbol's name if this dim is exactly one symbol.
    pub fn as_sym(&self) -> Option<&str> {
        if self.terms.len() != 1 {
            return None;
        }
        let (m, c) = self.terms.iter().next()?;
        match (m.as_slice(), c) {
            ([Atom::Sym(s)], 1) => Some(s),
            _ => None,
        }
    }

    /// The terms of the canonical polynomial: each monomial (a product of
    /// atoms; empty for the constant term) with its non-zero coefficient. Code
    /// generators use it to evaluate a dim at run time.
    pub fn terms(&self) -> impl Iterator<Item = (&[Atom], i64)> + '_ {
        self.terms.iter().map(|(m, c)| (m.as_slice(), *c))
    }

    /// Every symbol name this dim mentions, sorted and deduplicated.
    pub fn symbols(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.collect_symbols(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn collect_symbols(&self, out: &mut Vec<Arc<str>>) {
        for m in self.terms.keys() {
            for a in m {
                match a {
                    Atom::Sym(s) => out.push(s.clone()),
                    Atom::FloorDiv(x, y) | Atom::Mod(x, y) | Atom::Min(x, y) | Atom::Max(x, y) => {
                        x.collect_symbols(out);
                        y.collect_symbols(out);
                    }
                }
            }
        }
    }

    fn add_term(&mut self, m: Monomial, c: i64) {
        if c == 0 {
            return;
        }
        let e = self.terms.entry(m).or_insert(0);
        *e = e.wrapping_add(c);
        if *e == 0 {
            self.terms.retain(|_, v| *v != 0);
        }
    }

    /// `self + other`.
    pub fn add(&self, other: &Dim) -> Dim {
        let mut out = self.clone();
        for (m, c) in &other.terms {
            out.add_term(m.clone(), *c);
        }
        out
    }

    /// `self - other`.
    pub fn sub(&self, other: &Dim) -> Dim {
        self.add(&other.neg())
    }

    /// `-self`.
    pub fn neg(&self) -> Dim {
        Dim {
            terms: self
                .terms
                .iter()
                .map(|(m, c)| (m.clone(), c.wrapping_neg()))
                .collect(),
        }
    }

    /// `self * other`.
    pub fn mul(&self, other: &Dim) -> Dim {
        let mut out = Dim::default();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let mut m = ma.clone();
                m.extend(mb.iter().cloned());
                m.sort();
                out.add_term(m, ca.wrapping_mul(*cb));
            }
        }
        out
    }

    /// Floor division, exact where the polynomial allows it.
    pub fn floor_div(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            if b != 0 {
                return Dim::constant(floor_div_i64(a, b));
            }
        }
        if other.is(1) {
            return self.clone();
        }
        if self.terms.is_empty() {
            return Dim::constant(0);
        }
        if let Some(q) = self.exact_div(other) {
            return q;
        }
        Dim::from_atom(Atom::FloorDiv(
            Box::new(self.clone()),
            Box::new(other.clone()),
        ))
    }

    /// Ceiling division, `floordiv(self + other - 1, other)` for positive `other`.
    pub fn ceil_div(&self, other: &Dim) -> Dim {
        if let Some(q) = self.exact_div(other) {
            return q;
        }
        self.add(other).sub(&Dim::constant(1)).floor_div(other)
    }

    /// The quotient if `other` divides every term of `self` exactly.
    fn exact_div(&self, other: &Dim) -> Option<Dim> {
        if other.terms.len() != 1 {
            return if self == other && !self.terms.is_empty() {
                Some(Dim::constant(1))
            } else {
                None
            };
        }
        let (dm, dc) = other.terms.iter().next()?;
        if *dc == 0 {
            return None;
        }
        let mut out = Dim::default();
        for (m, c) in &self.terms {
            // Wrapping: `i64::MIN % -1` would panic (its quotient overflows).
            if c.wrapping_rem(*dc) != 0 {
                return None;
            }
            let mut rest = m.clone();
            for a in dm {
                let pos = rest.iter().position(|x| x == a)?;
                rest.remove(pos);
            }
            out.add_term(rest, c.wrapping_div(*dc));
        }
        Some(out)
    }

    /// The remainder of floor division (sign of `other`).
    pub fn rem(&self, other: &Dim) -> Dim {
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            if b != 0 {
                return Dim::constant(floor_mod_i64(a, b));
            }
        }
        if self.exact_div(other).is_some() {
            return Dim::constant(0);
        }
        Dim::from_atom(Atom::Mod(Box::new(self.clone()), Box::new(other.clone())))
    }

    /// A lower bound of the value, assuming every symbol and atom is at least 1,
    /// if one can be given (no negative non-constant term).
    fn lower_bound(&self) -> Option<i64> {
        let mut lb: i64 = 0;
        for (m, c) in &self.terms {
            // A constant counts fully; a positive monomial of symbols is at least its coefficient.
            if m.is_empty() || (*c > 0 && m.iter().all(|a| matches!(a, Atom::Sym(_)))) {
                lb = lb.saturating_add(*c);
            } else if let ([atom], true) = (m.as_slice(), *c > 0) {
                // `min(a, b)` is at least the smaller bound, `max(a, b)` at least either.
                let b = match atom {
                    Atom::Min(x, y) => x.lower_bound()?.min(y.lower_bound()?),
                    Atom::Max(x, y) => match (x.lower_bound(), y.lower_bound()) {
                        (Some(p), Some(q)) => p.max(q),
                        (Some(p), None) | (None, Some(p)) => p,
                        (None, None) => return None,
                    },
                    _ => return None,
                };
                lb = lb.saturating_add(c.saturating_mul(b));
            } else {
                return None;
            }
        }
        Some(lb)
    }

    /// Compares two dims where the simplifier can tell, assuming symbols are at least 1.
    ///
    /// `Greater` means "at least as large and not the same polynomial" (and
    /// `Less` the mirror): enough to decide `min` and `max`, not strict order.
    pub fn compare(&self, other: &Dim) -> Option<Ordering> {
        if self == other {
            return Some(Ordering::Equal);
        }
        if let (Some(a), Some(b)) = (self.as_const(), other.as_const()) {
            return Some(a.cmp(&b));
        }
        // Sentinels such as i64::MAX in Slice ends exceed any real size.
        if let Some(b) = other.as_const() {
            if b >= HUGE {
                return Some(Ordering::Less);
            }
            if b <= -HUGE {
                return Some(Ordering::Greater);
            }
        }
        if let Some(a) = self.as_const() {
            if a >= HUGE {
                return Some(Ordering::Greater);
            }
            if a <= -HUGE {
                return Some(Ordering::Less);
            }
        }
        if self.sub(other).lower_bound().is_some_and(|lb| lb >= 0) {
            return Some(Ordering::Greater); // >=, but not equal structurally: treat as >=.
        }
        if other.sub(self).lower_bound().is_some_and(|lb| lb >= 0) {
            return Some(Ordering::Less);
        }
        if let Some(o) = other.compare_min_max(self) {
            return Some(o.reverse());
        }
        self.compare_min_max(other)
    }

    /// Compares `self`, a lone `min` or `max` atom, with `other`:
    /// `min(a, b)` is at most `a` and `b`, `max(a, b)` at least both.
    fn compare_min_max(&self, other: &Dim) -> Option<Ordering> {
        let (m, c) = self.terms.iter().next().filter(|_| self.terms.len() == 1)?;
        let ([atom], 1) = (m.as_slice(), *c) else {
            return None;
        };
        let ge = |x: &Dim| matches!(x.compare(other), Some(Ordering::Greater | Ordering::Equal));
        let le = |x: &Dim| matches!(x.compare(other), Some(Ordering::Less | Ordering::Equal));
        match atom {
            Atom::Min(a, b) if le(a) || le(b) => Some(Ordering::Less),
            Atom::Min(a, b) if ge(a) && ge(b) => Some(Ordering::Greater),
            Atom::Max(a, b) if ge(a) || ge(b) => Some(Ordering::Greater),
            Atom::Max(a, b) if le(a) && le(b) => Some(Ordering::Less),
            _ => None,
        }
    }

    /// `min(self, other)`, decided where possible.
    pub fn min_dim(&self, other: &Dim) -> Dim {
        match self.compare(other) {
            Some(Ordering::Less | Ordering::Equal) => self.clone(),
            Some(Ordering::Greater) => other.clone(),
            None => {
                let (a, b) = if self <= other {
                    (self, other)
                } else {
                    (other, self)
                };
                Dim::from_atom(Atom::Min(Box::new(a.clone()), Box::new(b.clone())))
            }
        }
    }

    /// `max(self, other)`, decided where possible.
    pub fn max_dim(&self, other: &Dim) -> Dim {
        match self.compare(other) {
            Some(Ordering::Greater | Ordering::Equal) => self.clone(),
            Some(Ordering::Less) => other.clone(),
            None => {
                let (a, b) = if self <= other {
                    (self, other)
                } else {
                    (other, self)
                };
                Dim::from_atom(Atom::Max(Box::new(a.clone()), Box::new(b.clone())))
            }
        }
    }

    /// Evaluates the dim with symbols bound by `env`.
    ///
    /// Fails with the name of the first unbound symbol, or on division by zero.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Result<i64, String> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for a in m {
                v = v.wrapping_mul(eval_atom(a, env)?);
            }
            total = total.wrapping_add(v);
        }
        Ok(total)
    }

    /// Replaces symbols by dims, as `map` says; unmapped symbols stay.
    pub fn substitute(&self, map: &dyn Fn(&str) -> Option<Dim>) -> Dim {
        let mut out = Dim::constant(0);
        for (m, c) in &self.terms {
            let mut t = Dim::constant(*c);
            for a in m {
                let f = match a {
                    Atom::Sym(s) => map(s).unwrap_or_else(|| Dim::sym(s)),
                    Atom::FloorDiv(x, y) => x.substitute(map).floor_div(&y.substitute(map)),
                    Atom::Mod(x, y) => x.substitute(map).rem(&y.substitute(map)),
                    Atom::Min(x, y) => x.substitute(map).min_dim(&y.substitute(map)),
                    Atom::Max(x, y) => x.substitute(map).max_dim(&y.substitute(map)),
                };
                t = t.mul(&f);
            }
            out = out.add(&t);
        }
        out
    }

    /// Parses the text form written by `Display`.
    pub fn parse(text: &str) -> Result<Dim, String> {
        let mut p = DimParser {
            s: text.as_bytes(),
            i: 0,
        };
        let d = p.expr()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected `{}` in dim `{text}`", &text[p.i..]));
        }
        Ok(d)
    }
}

/// True if `name` reads back from the text form as one symbol: `[A-Za-z_][A-Za-z0-9_]*`,
/// what [`Dim::parse`] takes for a symbol. Ops that name a symbol in an attribute (`pack`'s
/// `tokens`) require it, so that the symbol prints and parses like any other.
pub fn is_symbol_name(name: &str) -> bool {
    let mut cs = name.bytes();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `floor(a / b)` for `b != 0`, wrapping as the coefficients do: the one
/// overflowing case, `i64::MIN / -1`, gives `i64::MIN` rather than a panic.
fn floor_div_i64(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div_euclid(b);
    if b < 0 && a.wrapping_rem_euclid(b) != 0 {
        q.wrapping_sub(1)
    } else {
        q
    }
}

/// The remainder of floor division for `b != 0`, with the sign of `b`
/// (`i64::MIN mod -1` is 0, not a panic).
fn floor_mod_i64(a: i64, b: i64) -> i64 {
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

fn eval_atom(a: &Atom, env: &dyn Fn(&str) -> Option<i64>) -> Result<i64, String> {
    Ok(match a {
        Atom::Sym(s) => env(s).ok_or_else(|| format!("symbol `{s}` is not bound"))?,
        Atom::FloorDiv(x, y) => {
            let (x, y) = (x.eval(env)?, y.eval(env)?);
            if y == 0 {
                return Err("division by zero in a dim".into());
            }
            floor_div_i64(x, y)
        }
        Atom::Mod(x, y) => {
            let (x, y) = (x.eval(env)?, y.eval(env)?);
            if y == 0 {
                return Err("division by zero in a dim".into());
            }
            floor_mod_i64(x, y)
        }
        Atom::Min(x, y) => x.eval(env)?.min(y.eval(env)?),
        Atom::Max(x, y) => x.eval(env)?.max(y.eval(env)?),
    })
}

impl From<i64> for Dim {
    fn from(v: i64) -> Dim {
        Dim::constant(v)
    }
}

impl From<usize> for Dim {
    fn from(v: usize) -> Dim {
        Dim::constant(v as i64)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::FloorDiv(a, b) => write!(f, "floordiv({a}, {b})"),
            Atom::Mod(a, b) => write!(f, "mod({a}, {b})"),
            Atom::Min(a, b) => write!(f, "min({a}, {b})"),
            Atom::Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

impl fmt::Display for Dim {
    /// Writes terms from the highest degree down, the constant last:
    /// `batch*seq*128` is written `128*batch*seq`, `seq + 1` as is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut terms: Vec<_> = self.terms.iter().collect();
        terms.sort_by(|(ma, _), (mb, _)| mb.len().cmp(&ma.len()).then(ma.cmp(mb)));
        for (i, (m, c)) in terms.into_iter().enumerate() {
            let (neg, mag) = (*c < 0, c.unsigned_abs());
            if i == 0 {
                if neg {
                    f.write_str("-")?;
                }
            } else {
                f.write_str(if neg { " - " } else { " + " })?;
            }
            if m.is_empty() {
                write!(f, "{mag}")?;
                continue;
            }
            if mag != 1 {
                write!(f, "{mag}*")?;
            }
            for (j, a) in m.iter().enumerate() {
                if j > 0 {
                    f.write_str("*")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

struct DimParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl DimParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Dim, String> {
        let mut d = self.term()?;
        loop {
            if self.eat(b'+') {
                d = d.add(&self.term()?);
            } else if self.eat(b'-') {
                d = d.sub(&self.term()?);
            } else {
                return Ok(d);
            }
        }
    }

    fn term(&mut self) -> Result<Dim, String> {
        let mut d = self.factor()?;
        while self.eat(b'*') {
            d = d.mul(&self.factor()?);
        }
        Ok(d)
    }

    fn factor(&mut self) -> Result<Dim, String> {
        self.ws();
        if self.eat(b'-') {
            return Ok(self.factor()?.neg());
        }
        if self.eat(b'(') {
            let d = self.expr()?;
            if !self.eat(b')') {
                return Err("expected `)` in dim".into());
            }
            return Ok(d);
        }
        let start = self.i;
        if self.s.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
            while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
            return t
                .parse::<i64>()
                .map(Dim::constant)
                .map_err(|e| format!("bad integer `{t}` in dim: {e}"));
        }
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!(
                "expected a dim at `{}`",
                String::from_utf8_lossy(&self.s[start..])
            ));
        }
        let name = std::str::from_utf8(&self.s[start..self.i])
            .unwrap_or_default()
            .to_string();
        let func = matches!(name.as_str(), "floordiv" | "mod" | "min" | "max");
        if func && self.eat(b'(') {
            let a = self.expr()?;
            if !self.eat(b',') {
                return Err(format!("expected `,` in {name}(..)"));
            }
            let b = self.expr()?;
            if !self.eat(b')') {
                return Err(format!("expected `)` closing {name}(..)"));
            }
            return Ok(match name.as_str() {
                "floordiv" => a.floor_div(&b),
                "mod" => a.rem(&b),
                "min" => a.min_dim(&b),
                _ => a.max_dim(&b),
            });
        }
        Ok(Dim::sym(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dim {
        Dim::parse(s).unwrap()
    }

    #[test]
    fn canonical_form_merges_like_terms() {
        assert_eq!(d("seq*2 + seq"), d("3*seq"));
        assert_eq!(d("batch*seq*128").to_string(), "128*batch*seq");
        assert_eq!(d("seq - 1").to_string(), "seq - 1");
        assert_eq!(d("seq - seq"), Dim::constant(0));
    }

    #[test]
    fn exact_division_simplifies() {
        assert_eq!(d("128*batch*seq").floor_div(&d("128*batch")), d("seq"));
        assert_eq!(d("6*seq").floor_div(&d("3")), d("2*seq"));
        assert_eq!(d("seq").floor_div(&d("2")).to_string(), "floordiv(seq, 2)");
        assert_eq!(d("7").floor_div(&d("-2")), d("-4"));
    }

    #[test]
    fn min_max_use_positivity_and_sentinels() {
        assert_eq!(d("seq").min_dim(&d("9223372036854775807")), d("seq"));
        assert_eq!(d("seq - 1").max_dim(&d("0")), d("seq - 1"));
        assert_eq!(d("seq").max_dim(&d("1")), d("seq"));
        assert_eq!(d("seq").min_dim(&d("128")).to_string(), "min(128, seq)");
        // A clamped slice length broadcast against the dim it was clamped to.
        assert_eq!(d("min(512, seq)").max_dim(&d("0")), d("min(512, seq)"));
        assert_eq!(d("seq").max_dim(&d("min(512, seq)")), d("seq"));
        assert_eq!(d("min(512, seq)").min_dim(&d("seq")), d("min(512, seq)"));
        assert_eq!(d("max(seq, 4)").max_dim(&d("seq")), d("max(4, seq)"));
    }

    #[test]
    fn text_round_trips() {
        for s in [
            "128*batch*seq",
            "seq + 1",
            "-seq",
            "floordiv(seq, 2) + 3",
            "min(batch, seq)",
        ] {
            assert_eq!(d(s).to_string(), s);
        }
    }

    #[test]
    fn eval_binds_symbols() {
        let env = |s: &str| match s {
            "seq" => Some(17),
            "batch" => Some(3),
            _ => None,
        };
        assert_eq!(d("batch*seq + floordiv(seq, 2)").eval(&env), Ok(51 + 8));
        assert!(d("other").eval(&env).is_err());
    }
}
