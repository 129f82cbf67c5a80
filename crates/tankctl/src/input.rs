//! Reading pod documents for `tankctl apply`: a file or stdin, JSON (a
//! document that starts with `{`) or YAML, read by tank-api's one strict
//! reader — the code tankd's Apply runs ([`Pod::from_json`]) and its
//! `pods_dir` seeding ([`Pod::from_yaml`]) — so tankctl refuses exactly
//! what tankd refuses (a repeated key, an unknown field, a broken rule),
//! with tankd's message, before anything is sent. What goes on the bus is
//! the pod's canonical JSON; tankd checks it again.

use std::io::Read;
use std::path::Path;

use tank_api::spec::Pod;

use crate::error::ClientError;

/// Reads `source` (`-` = stdin) as a pod.
pub fn read_document(source: &Path) -> Result<Pod, ClientError> {
    let text = if source == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ClientError::Input(format!("cannot read stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| ClientError::Input(format!("cannot read {}: {e}", source.display())))?
    };
    Ok(parse(&text)?)
}

/// A JSON document (it starts with `{`) or else a YAML one, read strictly.
pub fn parse(text: &str) -> Result<Pod, tank_api::spec::SpecError> {
    if text.trim_start().starts_with('{') {
        Pod::from_json(text)
    } else {
        Pod::from_yaml(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_are_read_alike() {
        let yaml = parse("name: web\ncontainers:\n  - name: app\n    image: busybox\n").unwrap();
        let json =
            parse(r#" {"name": "web", "containers": [{"name": "app", "image": "busybox"}]}"#)
                .unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml.containers[0].name, "app");
    }

    #[test]
    fn a_repeated_key_is_refused_as_tankd_refuses_it() {
        let json = r#"{"name": "a", "name": "b", "containers": []}"#;
        assert_eq!(parse(json).unwrap_err(), Pod::from_json(json).unwrap_err(),);
        assert_eq!(
            parse(json).unwrap_err().to_string(),
            r#"invalid JSON: duplicate key "name" at line 1 column 20"#
        );
        let yaml = "name: web\ncontainers:\n  - name: app\n    image: busybox\n    image: nginx\n";
        assert_eq!(
            ClientError::from(parse(yaml).unwrap_err()).to_string(),
            r#"invalid spec: invalid YAML: containers[0]: duplicate key "image" at line 3 column 5"#
        );
    }

    #[test]
    fn broken_rules_are_refused_with_the_field_path() {
        let err =
            parse(r#"{"name": "Web_1", "containers": [{"name": "a", "image": "b"}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("name: "), "{err}");
        let err = parse("this is not json").unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }
}
