//! Markdown tables from the JSON reports of several runs: one row per (report, target).

use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

/// The markdown table of every target summary in `files`, with ratios to `baseline` (or to the
/// first target of each report).
pub fn markdown(files: &[PathBuf], baseline: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    out.push_str(
        "| scenario | QoS | pubs/subs | target | runs | received/s (median) | p50 ms | p99 ms \
         | max full-delivery rate/s | lost | vs baseline | deliveries per broker CPU-s |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a report: {e}", file.display()))?;
        rows(&doc, baseline, &mut out);
    }
    Ok(out)
}

fn rows(doc: &Value, baseline: Option<&str>, out: &mut String) {
    let summaries = doc["summary"].as_array().cloned().unwrap_or_default();
    let base = summaries
        .iter()
        .find(|s| Some(s["target"].as_str().unwrap_or("")) == baseline)
        .or_else(|| summaries.first())
        .cloned();
    let headline = |s: &Value| -> f64 {
        s["median_max_received_per_s"]
            .as_f64()
            .unwrap_or_else(|| s["median_received_per_s"].as_f64().unwrap_or(0.0))
    };
    let base_value = base.as_ref().map_or(0.0, headline);
    let rate = doc["rate_per_publisher"].as_f64().unwrap_or(0.0);
    let mut scenario = if rate > 0.0 {
        format!("{} @{rate}/s/pub", doc["scenario"].as_str().unwrap_or("?"))
    } else {
        doc["scenario"].as_str().unwrap_or("?").to_owned()
    };
    // Issue 17's payload-size runs: the size, when it is not the default 64 bytes.
    if let Some(payload) = doc["payload_bytes"].as_u64().filter(|&p| p != 64) {
        scenario.push_str(&format!(" {payload} B"));
    }
    for s in &summaries {
        // A search that never failed only shows a lower bound.
        let at_least = if s["max_bounded"].as_bool() == Some(false) {
            "≥ "
        } else {
            ""
        };
        let max = s["median_max_received_per_s"]
            .as_f64()
            .map_or("-".to_string(), |m| format!("{at_least}{m:.0}"));
        let ratio = if base_value > 0.0 {
            format!("{:.2}x", headline(s) / base_value)
        } else {
            "-".to_string()
        };
        let broken = if s["guarantee_broken"].as_bool() == Some(true) {
            " **QoS guarantee broken**"
        } else {
            ""
        };
        let per_cpu = s["median_received_per_broker_cpu_s"]
            .as_f64()
            .map_or("-".to_string(), |m| format!("{m:.0}"));
        let _ = writeln!(
            out,
            "| {} | {} | {}/{} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {}{} | {} | {} |",
            scenario,
            doc["qos"],
            doc["publishers"],
            doc["subscribers"],
            s["target"].as_str().unwrap_or("?"),
            s["runs"],
            s["median_received_per_s"].as_f64().unwrap_or(0.0),
            s["median_p50_ms"].as_f64().unwrap_or(0.0),
            s["median_p99_ms"].as_f64().unwrap_or(0.0),
            max,
            s["lost_total"],
            broken,
            ratio,
            per_cpu
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_ratios() {
        let doc: Value = serde_json::from_str(
            r#"{"scenario":"p2p","qos":1,"publishers":2,"subscribers":2,"rate_per_publisher":0,
               "summary":[{"target":"a","runs":2,"median_received_per_s":100.0,"median_p50_ms":1.0,
                           "median_p99_ms":2.0,"median_max_received_per_s":null,"lost_total":0,
                           "guarantee_broken":false},
                          {"target":"b","runs":2,"median_received_per_s":50.0,"median_p50_ms":1.0,
                           "median_p99_ms":2.0,"median_max_received_per_s":null,"lost_total":3,
                           "guarantee_broken":true}]}"#,
        )
        .unwrap();
        let mut out = String::new();
        rows(&doc, None, &mut out);
        assert!(out.contains("| p2p | 1 | 2/2 | a | 2 | 100 |"), "{out}");
        assert!(
            out.contains("| 1.00x |") && out.contains("| 0.50x |"),
            "{out}"
        );
        assert!(out.contains("**QoS guarantee broken**"), "{out}");
        let mut out = String::new();
        rows(&doc, Some("b"), &mut out);
        assert!(out.contains("| 2.00x |"), "{out}");
        let mut big = doc.clone();
        big["payload_bytes"] = serde_json::json!(16384);
        let mut out = String::new();
        rows(&big, None, &mut out);
        assert!(out.contains("| p2p 16384 B | 1 |"), "{out}");
    }
}
