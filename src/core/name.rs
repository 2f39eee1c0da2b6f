//! Names that many records repeat (a namespace, a node, a workload), kept
//! once: ten thousand pods of one namespace on a hundred nodes hold one
//! copy of the namespace's name and a hundred of node names, not ten
//! thousand of each.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable, shared string: cloning it copies a pointer. Reads as a
/// `&str` (`Deref`), compares and sorts as one, serializes as one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl Name {
    /// Both are the one stored copy.
    pub fn is_same_copy(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name(Arc::from(s.as_str()))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        String::deserialize(d).map(Name::from)
    }
}

/// The names seen so far: `get` hands out the stored copy of a name, and
/// stores it the first time.
#[derive(Debug, Default)]
pub struct Names(HashSet<Name>);

impl Names {
    pub fn get(&mut self, s: &str) -> Name {
        if let Some(n) = self.0.get(s) {
            return n.clone();
        }
        let n = Name::from(s);
        self.0.insert(n.clone());
        n
    }

    /// The stored copy of `name` (storing `name` itself if it is new).
    pub fn share(&mut self, name: &Name) -> Name {
        match self.0.get(name.as_str()) {
            Some(n) => n.clone(),
            None => {
                self.0.insert(name.clone());
                name.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_distinct_name() {
        let mut names = Names::default();
        let a = names.get("shop");
        let b = names.get(&String::from("shop"));
        assert!(Arc::ptr_eq(&a.0, &b.0), "the second `shop` is the stored one");
        let c = names.share(&Name::from("shop"));
        assert!(Arc::ptr_eq(&a.0, &c.0));
        let d = names.get("web");
        assert!(!Arc::ptr_eq(&a.0, &d.0));
        assert_eq!((a.as_str(), &*d), ("shop", "web"));
    }

    #[test]
    fn reads_compares_and_serializes_as_a_string() {
        let n = Name::from("node-1");
        assert_eq!(n, "node-1");
        assert_eq!(n.to_string(), "node-1");
        assert_eq!(format!("{n:?}"), "\"node-1\"");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"node-1\"");
        assert_eq!(serde_json::from_str::<Name>("\"node-1\"").unwrap(), n);
        let mut sorted = vec![Name::from("b"), Name::from("a")];
        sorted.sort();
        assert_eq!(sorted, ["a", "b"]);
    }
}
