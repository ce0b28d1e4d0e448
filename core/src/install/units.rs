//! The files `edgetwin install` writes, as text: the agent's configuration and one hardened
//! systemd unit per service. Pure: everything comes in through [`Layout`].
//!
//! Every unit runs under a dynamic user (no account to create, nothing owned on disk outside
//! the state directory), with no capabilities, a read-only system, no new privileges, a system
//! call filter and only the address families MQTT and the tunnel use. The agent's node token
//! reaches it as a systemd credential (readable by that service alone, never by a mapper).
//! The GPIO mapper additionally gets the `gpio` group and the GPIO device nodes, and nothing
//! else of `/dev`.

use std::fmt::Write as _;
use std::path::Path;

use super::{CONFIG_DIR, MapperKind, STATE_DIR};

/// Where things go on the node, and what the units must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory of the binaries (`/usr/local/bin`).
    pub bin_dir: String,
    /// The edge node's name.
    pub node: String,
    /// The embedded broker's address, which the mappers connect to.
    pub broker: String,
    /// The cloud link, if any.
    pub cloud: Option<CloudLink>,
    /// Whether the agent serves the Devices in [`DEVICES_DIR`](super::DEVICES_DIR).
    pub devices: bool,
}

/// How the agent reaches the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudLink {
    /// `wss://host:port` (or `ws://` with `insecure`).
    pub url: String,
    /// Whether a CA file is installed ([`CA_FILE`](super::CA_FILE)).
    pub ca: bool,
    /// Plain `ws://` allowed.
    pub insecure: bool,
}

/// The systemd credential name of the node token.
pub const TOKEN_CREDENTIAL: &str = "node.token";

/// The systemd credential name of a mapper's bus credentials.
pub const BUS_CREDENTIAL: &str = "bus.json";

/// The first line of every file the installer writes.
pub const WRITTEN_BY: &str = "# Written by `edgetwin install`; `edgetwin uninstall` removes it.";

/// The agent's unit name.
pub const EDGE_UNIT: &str = "edgetwin-edge.service";

/// Hardening shared by every unit (the GPIO mapper relaxes only the device part).
const SANDBOX: &str = "\
DynamicUser=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077
";

/// `edge.yaml`.
pub fn edge_config(layout: &Layout) -> String {
    let mut text = format!(
        "{WRITTEN_BY}
# (kept by later installs unless --force; `edgetwin uninstall --purge` removes it.)
# Every key and its default: edgetwin edge --print-default-config
nodeName: {node}
dataDir: {STATE_DIR}
broker:
  embedded:
    listen: {broker}
",
        node = layout.node,
        broker = layout.broker,
    );
    // Every mapper `edgetwin install` knows is a bus client of its own protocol: the agent writes
    // each one's credentials into {STATE_DIR}/bus/, and the mapper's unit loads its file.
    text.push_str(
        "bus:
  # The broker takes only these clients; each mapper's unit loads its credentials file
  # (LoadCredential=) from the agent's data dir.
  clients:
",
    );
    for kind in MapperKind::ALL {
        let _ = writeln!(
            text,
            "    - name: {name}\n      protocols: [{name}]",
            name = kind.name()
        );
    }
    if let Some(cloud) = &layout.cloud {
        let _ = write!(
            text,
            "cloud:
  url: {url}
  # The token is a systemd credential of {EDGE_UNIT} (LoadCredential=): only that service
  # reads it.
  tokenFile: /run/credentials/{EDGE_UNIT}/{TOKEN_CREDENTIAL}
",
            url = cloud.url,
        );
        if cloud.ca {
            let _ = writeln!(text, "  caFile: {}", super::CA_FILE);
        }
        if cloud.insecure {
            let _ = writeln!(text, "  insecure: true");
        }
    }
    text
}

/// `edgetwin-edge.service`.
pub fn edge_unit(layout: &Layout) -> String {
    let mut exec = format!(
        "{}/edgetwin edge --config {CONFIG_DIR}/edge.yaml",
        layout.bin_dir
    );
    if layout.devices {
        let _ = write!(exec, " --devices {}", super::DEVICES_DIR);
    }
    let credential = if layout.cloud.is_some() {
        format!("LoadCredential={TOKEN_CREDENTIAL}:{}\n", super::TOKEN_FILE)
    } else {
        String::new()
    };
    format!(
        "{WRITTEN_BY}
[Unit]
Description=edgetwin edge agent (node {node})
Documentation=https://github.com/edgetwin/edgetwin/tree/main/examples/traffic-light
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec}
Environment=RUST_LOG=info
Restart=always
RestartSec=2
# SIGTERM: the agent closes its store and broker cleanly.
TimeoutStopSec=15
# The store ({STATE_DIR}/edge.db), owned by the service's dynamic user.
StateDirectory=edgetwin
StateDirectoryMode=0700
{credential}PrivateDevices=yes
{SANDBOX}
[Install]
WantedBy=multi-user.target
",
        node = layout.node,
    )
}

/// The unit of one mapper (`edgetwin-mapper-gpio.service`, …).
pub fn mapper_unit(kind: MapperKind, layout: &Layout) -> String {
    let devices = match kind {
        // rppal maps the GPIO registers (/dev/gpiomem; /dev/gpiomem0 on a Pi 5) and watches
        // edges through the character device, which the cdev backend uses for everything.
        MapperKind::Gpio => {
            "\
# The GPIO registers (rppal) and the GPIO character devices (edges; the cdev backend), and
# nothing else of /dev. Raspberry Pi OS gives them to the gpio group.
SupplementaryGroups=gpio
DevicePolicy=closed
DeviceAllow=/dev/gpiomem rw
DeviceAllow=/dev/gpiomem0 rw
DeviceAllow=char-gpiochip rw
"
        }
        // Modbus RTU over a serial line; Modbus TCP needs no device.
        MapperKind::Modbus => {
            "\
# Serial lines for Modbus RTU (the dialout group), and nothing else of /dev.
SupplementaryGroups=dialout
DevicePolicy=closed
DeviceAllow=char-ttyS rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-ttyACM rw
"
        }
        MapperKind::Sim => "PrivateDevices=yes\n",
    };
    format!(
        "{WRITTEN_BY}
[Unit]
Description=edgetwin {what} (node {node})
Documentation=https://github.com/edgetwin/edgetwin/tree/main/examples/traffic-light
# The agent runs the broker this mapper connects to (the mapper also retries on its own).
Wants={EDGE_UNIT}
After={EDGE_UNIT}

[Service]
Type=simple
# The bus credentials the agent wrote for this mapper (its client `{name}` in edge.yaml).
LoadCredential={BUS_CREDENTIAL}:{STATE_DIR}/bus/{name}.json
ExecStart={bin}/{binary} --node {node} --broker {broker} --credentials %d/{BUS_CREDENTIAL}
Environment=RUST_LOG=info
Restart=always
RestartSec=2
TimeoutStopSec=10
{devices}{SANDBOX}
[Install]
WantedBy=multi-user.target
",
        what = kind.description(),
        name = kind.name(),
        bin = layout.bin_dir,
        binary = kind.binary(),
        node = layout.node,
        broker = layout.broker,
    )
}

/// The unit file name of a binary's service (`edgetwin-mapper-gpio.service`).
pub fn unit_name(binary: &str) -> String {
    format!("{binary}.service")
}

/// Whether `path` is a file this installer wrote (its first line says so).
pub fn written_by_us(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(WRITTEN_BY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(cloud: bool) -> Layout {
        Layout {
            bin_dir: "/usr/local/bin".into(),
            node: "pi-traffic".into(),
            broker: "127.0.0.1:1883".into(),
            cloud: cloud.then(|| CloudLink {
                url: "wss://cloud.example.net:10000".into(),
                ca: true,
                insecure: false,
            }),
            devices: !cloud,
        }
    }

    #[test]
    fn the_agent_unit_gets_its_token_as_a_credential_and_no_devices() {
        let unit = edge_unit(&layout(true));
        assert!(unit.starts_with(WRITTEN_BY));
        assert!(
            unit.contains(
                "ExecStart=/usr/local/bin/edgetwin edge --config /etc/edgetwin/edge.yaml\n"
            )
        );
        assert!(unit.contains("LoadCredential=node.token:/etc/edgetwin/node.token\n"));
        for line in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateDevices=yes",
            "CapabilityBoundingSet=\n",
            "StateDirectory=edgetwin",
            "Restart=always",
        ] {
            assert!(unit.contains(line), "{line} missing:\n{unit}");
        }
        let alone = edge_unit(&layout(false));
        assert!(alone.contains("--devices /etc/edgetwin/devices\n"));
        assert!(!alone.contains("LoadCredential"));
    }

    #[test]
    fn the_gpio_mapper_gets_the_gpio_group_and_only_the_gpio_devices() {
        let unit = mapper_unit(MapperKind::Gpio, &layout(true));
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/edgetwin-mapper-gpio --node pi-traffic --broker 127.0.0.1:1883 \
             --credentials %d/bus.json\n"
        ));
        for line in [
            "SupplementaryGroups=gpio",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/gpiomem rw",
            "DeviceAllow=char-gpiochip rw",
            "After=edgetwin-edge.service",
            "DynamicUser=yes",
        ] {
            assert!(unit.contains(line), "{line} missing:\n{unit}");
        }
        assert!(!unit.contains("PrivateDevices=yes"), "it needs /dev/gpio*");
        assert!(
            unit.contains("LoadCredential=bus.json:/var/lib/edgetwin/bus/gpio.json\n"),
            "its bus credentials:\n{unit}"
        );
        assert!(!unit.contains("node.token"), "never the node token");
        let sim = mapper_unit(MapperKind::Sim, &layout(true));
        assert!(sim.contains("PrivateDevices=yes") && !sim.contains("DeviceAllow"));
    }

    #[test]
    fn the_config_points_at_the_credential_and_the_ca() {
        let config = edge_config(&layout(true));
        assert!(config.contains("nodeName: pi-traffic\n"));
        assert!(config.contains("dataDir: /var/lib/edgetwin\n"));
        assert!(config.contains("tokenFile: /run/credentials/edgetwin-edge.service/node.token\n"));
        assert!(config.contains("caFile: /etc/edgetwin/cloud-ca.pem\n"));
        assert!(config.contains("    - name: gpio\n      protocols: [gpio]\n"));
        assert!(!edge_config(&layout(false)).contains("cloud:"));
    }
}
