//! A fleet of identical sensors as a devices file, for load tests and benchmarks.

/// A Devices YAML stream: one DeviceModel `sensor` with INT properties `p0`…, and `devices`
/// Devices `dev-0`… in namespace `default` on `node`, each with every property desired `"0"`.
pub fn sensor_fleet_yaml(node: &str, devices: usize, properties: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata:\n  name: sensor\n  namespace: default\nspec:\n  properties:\n",
    );
    for p in 0..properties {
        yaml.push_str(&format!("    - name: p{p}\n      type: INT\n"));
    }
    for d in 0..devices {
        yaml.push_str(&format!(
            "---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata:\n  name: dev-{d}\n  namespace: default\nspec:\n  deviceModelRef:\n    name: sensor\n  nodeName: {node}\n  properties:\n"
        ));
        for p in 0..properties {
            yaml.push_str(&format!(
                "    - name: p{p}\n      desired:\n        value: \"0\"\n"
            ));
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_one_model_and_its_devices() {
        let yaml = sensor_fleet_yaml("n1", 3, 2);
        assert_eq!(yaml.matches("kind: DeviceModel\n").count(), 1);
        assert_eq!(yaml.matches("kind: Device\n").count(), 3);
        assert_eq!(yaml.matches("nodeName: n1\n").count(), 3);
        assert_eq!(yaml.matches("- name: p1\n").count(), 4);
    }
}
