//! Reading pod documents for `tankctl apply`: a file or stdin, JSON or
//! YAML, turned into the JSON the bus carries. Validation is tankd's alone
//! (one source of truth for the rules and their messages); this module only
//! converts the syntax.

use std::io::Read;
use std::path::Path;

use super::ClientError;

/// Reads `source` (`-` = stdin) and returns it as a JSON document.
pub fn read_document(source: &Path) -> Result<String, ClientError> {
    let (name, text) = if source == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ClientError::Input(format!("cannot read stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| ClientError::Input(format!("cannot read {}: {e}", source.display())))?;
        (source.display().to_string(), text)
    };
    to_json(&name, &text)
}

/// JSON text passes through (after a syntax check); anything else is YAML.
pub fn to_json(name: &str, text: &str) -> Result<String, ClientError> {
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| ClientError::Input(format!("{name}: not valid JSON: {e}")))?
    } else {
        serde_norway::from_str(text)
            .map_err(|e| ClientError::Input(format!("{name}: not valid YAML: {e}")))?
    };
    if !value.is_object() {
        return Err(ClientError::Input(format!(
            "{name}: a pod document must be a mapping"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_becomes_json() {
        let json = to_json(
            "t",
            "name: web\ncontainers:\n  - name: app\n    image: busybox\n",
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["containers"][0]["image"], "busybox");
    }

    #[test]
    fn json_passes_through() {
        let json = to_json("t", r#" {"name": "web", "x": [1, 2]}"#).unwrap();
        assert_eq!(json, r#"{"name":"web","x":[1,2]}"#);
    }

    #[test]
    fn syntax_errors_name_the_source() {
        let err = to_json("pod.json", "{\"name\": ").unwrap_err();
        assert!(
            err.to_string().starts_with("pod.json: not valid JSON"),
            "{err}"
        );
        let err = to_json("pod.yaml", "- a\n- b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "pod.yaml: a pod document must be a mapping"
        );
    }
}
