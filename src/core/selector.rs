//! A Calico selector evaluator for the forms pools' `nodeSelector` usually
//! take, so the planner can tell which nodes a pool serves.
//!
//! The grammar it understands:
//!
//! ```text
//! selector := ""  |  alt ( "||" alt )*
//! alt      := term ( "&&" term )*
//! term     := "all()" | "!all()"
//!           | "has(" key ")" | "!has(" key ")"
//!           | key "==" value | key "!=" value
//! key      := [A-Za-z0-9_./-]+
//! value    := '...' | "..."
//! ```
//!
//! `&&` binds tighter than `||`; an empty selector selects everything.
//! `k != 'v'` also holds when the label is absent, as in Calico. Anything
//! else (parentheses, `in`, `not in`, `contains`, `starts with`, ...) is
//! not evaluated: the result is `None` and the caller decides. The text is
//! split on `||` and `&&` before quotes are looked at, so a value that
//! contains either is not evaluated either.

use std::collections::BTreeMap;

/// Evaluate the common forms of a Calico selector: `all()`, `!all()`,
/// `has(k)`, `!has(k)`, `k == 'v'`, `k != 'v'`, joined by `&&` or `||`.
/// Anything else (parentheses, `in`, ...) returns None.
pub fn eval_selector(selector: &str, labels: &BTreeMap<String, String>) -> Option<bool> {
    let s = selector.trim();
    if s.is_empty() {
        return Some(true);
    }
    if s.contains('(') && s.replace("all()", "").replace("has(", "").contains('(') {
        return None;
    }
    let mut any = false;
    for alt in s.split("||") {
        let mut all = true;
        for term in alt.split("&&") {
            all &= eval_term(term.trim(), labels)?;
        }
        any |= all;
    }
    Some(any)
}

fn eval_term(t: &str, labels: &BTreeMap<String, String>) -> Option<bool> {
    let unquote = |v: &str| {
        let v = v.trim();
        let q =
            v.len() >= 2 && ((v.starts_with('\'') && v.ends_with('\'')) || (v.starts_with('"') && v.ends_with('"')));
        q.then(|| v[1..v.len() - 1].to_string())
    };
    let key_ok = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if t == "all()" {
        return Some(true);
    }
    if t == "!all()" {
        return Some(false);
    }
    if let Some(k) = t.strip_prefix("!has(").and_then(|r| r.strip_suffix(')')) {
        return key_ok(k.trim()).then(|| !labels.contains_key(k.trim()));
    }
    if let Some(k) = t.strip_prefix("has(").and_then(|r| r.strip_suffix(')')) {
        return key_ok(k.trim()).then(|| labels.contains_key(k.trim()));
    }
    for (op, negate) in [("!=", true), ("==", false)] {
        if let Some((k, v)) = t.split_once(op) {
            let k = k.trim();
            let v = unquote(v)?;
            if !key_ok(k) {
                return None;
            }
            let eq = labels.get(k) == Some(&v);
            return Some(eq != negate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string()), ("b".to_string(), "x".to_string())].into();
        assert_eq!(eval_selector("all()", &labels), Some(true));
        assert_eq!(eval_selector("!all()", &labels), Some(false));
        assert_eq!(eval_selector("has(a)", &labels), Some(true));
        assert_eq!(eval_selector("!has(a)", &labels), Some(false));
        assert_eq!(eval_selector("a == '1' && b == \"x\"", &labels), Some(true));
        assert_eq!(eval_selector("a == '2' || b != 'y'", &labels), Some(true));
        assert_eq!(eval_selector("a == '2' || has(c)", &labels), Some(false));
        assert_eq!(eval_selector("(a == '1')", &labels), None);
        assert_eq!(eval_selector("a in {'1'}", &labels), None);
    }
}
