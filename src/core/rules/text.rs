//! Editing a CIDR list inside a YAML or JSON document kept as text (the
//! ip-masq-agent ConfigMap's `config`), keeping the user's layout and
//! comments: one entry is inserted or removed, nothing else moves. Every
//! edit is checked by parsing the result again.

use serde_yaml_ng::Value as Yaml;

/// The strings of list `key` at the top level of the document.
pub fn list_of(text: &str, key: &str) -> Option<Vec<String>> {
    let doc: Yaml = serde_yaml_ng::from_str(text).ok()?;
    let list = doc.get(key)?.as_sequence()?;
    Some(list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// Where the list of `key` is written, and how.
enum Layout {
    /// `key:` then `- item` lines; (index of the last item line, its indent).
    Block { last_line: usize, indent: String },
    /// `key: [a, b]` or JSON: byte offsets of `[` and its `]`.
    Flow { open: usize, close: usize },
}

fn layout(text: &str, key: &str) -> Option<Layout> {
    let lines: Vec<&str> = text.lines().collect();
    let key_line = lines.iter().position(|l| {
        let t = l.trim_start().trim_start_matches(['"', '\'']);
        t.starts_with(key) && t[key.len()..].trim_start_matches(['"', '\'']).trim_start().starts_with(':')
    })?;
    let offset: usize = lines[..key_line].iter().map(|l| l.len() + 1).sum();
    let after_colon = offset + lines[key_line].find(':')? + 1;
    let rest = &text[after_colon..];
    let first = rest.find(|c: char| !c.is_whitespace())?;
    if rest[first..].starts_with('[') {
        let open = after_colon + first;
        let close = open + text[open..].find(']')?;
        return Some(Layout::Flow { open, close });
    }
    // Block sequence: the `- ` lines right below the key.
    let mut last = None;
    let mut indent = String::new();
    for (i, l) in lines.iter().enumerate().skip(key_line + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !t.starts_with("- ") && t != "-" {
            break;
        }
        indent = l[..l.len() - t.len()].to_string();
        last = Some(i);
    }
    last.map(|last_line| Layout::Block { last_line, indent })
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches(['"', '\''])
}

/// `text` with `cidr` appended to the list of `key`; None when the list
/// cannot be found or the edit would not parse back to the list plus `cidr`.
pub fn add_to_list(text: &str, key: &str, cidr: &str) -> Option<String> {
    let before = list_of(text, key)?;
    let out = match layout(text, key)? {
        Layout::Block { last_line, indent } => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.insert(last_line + 1, format!("{indent}- {cidr}"));
            let mut s = lines.join("\n");
            if text.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Layout::Flow { open, close } => {
            let inner = &text[open + 1..close];
            let quote = if inner.contains('"') { "\"" } else { "" };
            let end = open + 1 + inner.trim_end().len();
            let sep = if inner.trim().is_empty() { "" } else { ", " };
            format!("{}{sep}{quote}{cidr}{quote}{}", &text[..end], &text[end..])
        }
    };
    let mut want = before;
    want.push(cidr.to_string());
    (list_of(&out, key)? == want).then_some(out)
}

/// `text` with the last entry `cidr` of the list of `key` removed; None when
/// it is not there or the edit would not parse back to the list minus it.
pub fn remove_from_list(text: &str, key: &str, cidr: &str) -> Option<String> {
    let before = list_of(text, key)?;
    let idx = before.iter().rposition(|c| c == cidr)?;
    let out = match layout(text, key)? {
        Layout::Block { last_line, .. } => {
            let lines: Vec<&str> = text.lines().collect();
            let at = (0..=last_line).rev().find(|i| {
                let t = lines[*i].trim_start();
                t.strip_prefix('-').is_some_and(|v| unquote(v) == cidr)
            })?;
            let mut s =
                lines.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
            if text.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Layout::Flow { open, close } => {
            let inner = &text[open + 1..close];
            let items: Vec<&str> = inner.split(',').collect();
            let at = items.iter().rposition(|i| unquote(i) == cidr)?;
            let mut kept: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            let removed = kept.remove(at);
            if at > 0 {
                // The space before `]` belonged to the list, not the entry.
                let trailing = &removed[removed.trim_end().len()..];
                kept[at - 1] = format!("{}{trailing}", kept[at - 1].trim_end());
            }
            let mut joined = kept.join(",");
            if at == 0 {
                // Keep the spacing the first item had.
                let lead = &items[0][..items[0].len() - items[0].trim_start().len()];
                joined = format!("{lead}{}", joined.trim_start());
            }
            format!("{}{joined}{}", &text[..=open], &text[close..])
        }
    };
    let mut want = before;
    want.remove(idx);
    (list_of(&out, key)? == want).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "nonMasqueradeCIDRs";

    #[test]
    fn block_list_gets_one_line_and_loses_it_again() {
        let text = "# pods and services\nnonMasqueradeCIDRs:\n  - 192.168.0.0/16 # pods\n  - 10.96.0.0/12\nmasqLinkLocal: false\n";
        let added = add_to_list(text, KEY, "10.0.0.0/16").unwrap();
        assert_eq!(
            added,
            "# pods and services\nnonMasqueradeCIDRs:\n  - 192.168.0.0/16 # pods\n  - 10.96.0.0/12\n  - 10.0.0.0/16\nmasqLinkLocal: false\n"
        );
        assert_eq!(remove_from_list(&added, KEY, "10.0.0.0/16").unwrap(), text);
    }

    #[test]
    fn flow_and_json_lists_keep_their_style() {
        let yaml = "nonMasqueradeCIDRs: [192.168.0.0/16]\nresyncInterval: 60s\n";
        let added = add_to_list(yaml, KEY, "10.0.0.0/16").unwrap();
        assert_eq!(added, "nonMasqueradeCIDRs: [192.168.0.0/16, 10.0.0.0/16]\nresyncInterval: 60s\n");
        assert_eq!(remove_from_list(&added, KEY, "10.0.0.0/16").unwrap(), yaml);
        let json = "{\n  \"nonMasqueradeCIDRs\": [\n    \"192.168.0.0/16\"\n  ],\n  \"masqLinkLocal\": true\n}";
        let added = add_to_list(json, KEY, "10.0.0.0/16").unwrap();
        assert!(added.contains("\"192.168.0.0/16\", \"10.0.0.0/16\"\n  ]"), "{added}");
        assert_eq!(list_of(&added, KEY).unwrap(), vec!["192.168.0.0/16", "10.0.0.0/16"]);
        assert_eq!(remove_from_list(&added, KEY, "10.0.0.0/16").unwrap(), json);
    }

    #[test]
    fn removes_only_the_last_copy_and_refuses_what_is_absent() {
        let text = "nonMasqueradeCIDRs:\n- 10.0.0.0/16\n- 192.168.0.0/16\n- 10.0.0.0/16\n";
        assert_eq!(
            remove_from_list(text, KEY, "10.0.0.0/16").unwrap(),
            "nonMasqueradeCIDRs:\n- 10.0.0.0/16\n- 192.168.0.0/16\n"
        );
        assert!(remove_from_list(text, KEY, "10.1.0.0/16").is_none());
        assert!(add_to_list("other: 1\n", KEY, "10.0.0.0/16").is_none());
        assert!(add_to_list("not: [yaml", KEY, "10.0.0.0/16").is_none());
    }
}
