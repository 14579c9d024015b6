//! `GET /1/lambdas/{id}/metrics`: every replica's Prometheus text merged into one exposition,
//! each sample labelled with its `replica`. Families keep their `# HELP`/`# TYPE` once, in the
//! order first seen; a replica that did not answer is named in a comment at the top.

use std::collections::HashMap;

/// Merges `(replica name, its /metrics text or why it has none)`.
pub fn merge(replicas: &[(String, Result<String, String>)]) -> String {
    let mut families: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out = String::new();
    for (replica, text) in replicas {
        let text = match text {
            Ok(text) => text,
            Err(why) => {
                out.push_str(&format!(
                    "# replica {replica}: no metrics ({})\n",
                    why.replace('\n', " ")
                ));
                continue;
            }
        };
        let label = format!("replica=\"{}\"", escape(replica));
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                let (kind, name) = (words.next(), words.next());
                if let (Some(kind @ ("HELP" | "TYPE")), Some(name)) = (kind, name) {
                    let i = family(&mut families, &mut index, name);
                    let slot = if kind == "HELP" {
                        &mut families[i].help
                    } else {
                        &mut families[i].kind
                    };
                    slot.get_or_insert_with(|| line.to_owned());
                    current = Some(i);
                }
                continue;
            }
            let name_end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(line.len());
            let name = &line[..name_end];
            let i = match current {
                Some(i) if name.starts_with(families[i].name.as_str()) => i,
                _ => family(&mut families, &mut index, name),
            };
            families[i].samples.push(relabel(line, name_end, &label));
        }
    }
    for f in &families {
        for header in [&f.help, &f.kind].into_iter().flatten() {
            out.push_str(header);
            out.push('\n');
        }
        for sample in &f.samples {
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

fn family(families: &mut Vec<Family>, index: &mut HashMap<String, usize>, name: &str) -> usize {
    *index.entry(name.to_owned()).or_insert_with(|| {
        families.push(Family {
            name: name.to_owned(),
            help: None,
            kind: None,
            samples: Vec::new(),
        });
        families.len() - 1
    })
}

/// `name{a="b"} 1` → `name{replica="r",a="b"} 1`; `name 1` → `name{replica="r"} 1`.
fn relabel(line: &str, name_end: usize, label: &str) -> String {
    let (name, rest) = line.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => format!("{name}{{{label}{labels}"),
        Some(labels) => format!("{name}{{{label},{labels}"),
        None => format!("{name}{{{label}}}{rest}"),
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total{kind=\"x\"} 3\n# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 0.5\nlat_count 2\n";
    const B: &str = "# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total{kind=\"x\"} 4\nhits_total{} 1\nuntyped_thing 7\n# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 0.25\nlat_count 1\n";

    #[test]
    fn merges_families_and_labels_each_replica() {
        let merged = merge(&[
            ("r-0".to_owned(), Ok(A.to_owned())),
            ("r-1".to_owned(), Ok(B.to_owned())),
            ("r-2".to_owned(), Err("connection refused".to_owned())),
        ]);
        assert_eq!(
            merged,
            "# replica r-2: no metrics (connection refused)\n\
             # HELP hits_total Hits.\n# TYPE hits_total counter\n\
             hits_total{replica=\"r-0\",kind=\"x\"} 3\n\
             hits_total{replica=\"r-1\",kind=\"x\"} 4\n\
             hits_total{replica=\"r-1\"} 1\n\
             # HELP lat Latency.\n# TYPE lat histogram\n\
             lat_bucket{replica=\"r-0\",le=\"+Inf\"} 2\nlat_sum{replica=\"r-0\"} 0.5\nlat_count{replica=\"r-0\"} 2\n\
             lat_bucket{replica=\"r-1\",le=\"+Inf\"} 1\nlat_sum{replica=\"r-1\"} 0.25\nlat_count{replica=\"r-1\"} 1\n\
             untyped_thing{replica=\"r-1\"} 7\n"
        );
    }

    #[test]
    fn replica_names_are_escaped() {
        let merged = merge(&[("a\"b".to_owned(), Ok("x 1\n".to_owned()))]);
        assert_eq!(merged, "x{replica=\"a\\\"b\"} 1\n");
    }
}
