//! The bus policy as mosquitto files, for a node whose agent uses an external mosquitto
//! ([`render`]): a `password_file` (PBKDF2-SHA-512 hashes, mosquitto's
//! `$7$` form), an `acl_file`, and the lines to add to `mosquitto.conf`.
//!
//! The ACL grants exactly what [`BusPolicy`] grants on the embedded broker. Two differences
//! follow from mosquitto's files: a client's devices are listed one by one, so the files must be
//! written again (and mosquitto sent SIGHUP) when the node's devices change; and client ids are
//! protected with `use_username_as_clientid` (every client's id is its username), which mosquitto
//! cannot combine with anonymous clients: with `bus.anonymous` on, any client can take another's
//! client id on mosquitto.

use std::fmt::Write as _;
use std::path::Path;

use edgetwin_model::mac::pbkdf2_hmac_sha512;

use super::policy::{BusPolicy, DeviceIndex, Principal};

/// PBKDF2 iterations of the password hashes (mosquitto_passwd's default).
const ITERATIONS: u32 = 101;

/// The three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoFiles {
    /// `password_file`: the agent and every client of `bus.clients`.
    pub password_file: String,
    /// `acl_file`.
    pub acl_file: String,
    /// Lines for `mosquitto.conf` (they name the two files in `dir`).
    pub conf: String,
}

/// The agent's own login on the broker.
#[derive(Debug, Clone, Copy)]
pub struct AgentLogin<'a> {
    /// Username.
    pub username: &'a str,
    /// Password.
    pub password: &'a str,
}

/// Writes `policy` for the node's current `devices`, with the agent's `agent` login, for files
/// that will live in `dir`. `salt` makes one 12-byte salt per password.
pub fn render(
    policy: &BusPolicy,
    devices: &DeviceIndex,
    agent: AgentLogin<'_>,
    dir: &Path,
    mut salt: impl FnMut() -> [u8; 12],
) -> MosquittoFiles {
    let mut password_file = String::new();
    let mut entry = |user: &str, password: &str| {
        let salt = salt();
        let hash = pbkdf2_hmac_sha512(password.as_bytes(), &salt, ITERATIONS);
        let _ = writeln!(
            password_file,
            "{user}:$7${ITERATIONS}${}${}",
            base64(&salt),
            base64(&hash)
        );
    };
    entry(agent.username, agent.password);
    for client in policy.clients() {
        entry(&client.name, client.password());
    }

    let node = policy.node();
    let mut acl = format!(
        "# The edgetwin bus policy of node {node} (write it\n\
         # again and send mosquitto SIGHUP when the node's devices change).\n"
    );
    if policy.anonymous() {
        acl.push_str("\n# Clients without credentials: reports, never specs or desired values.\n");
        grants(&mut acl, policy, Principal::Anonymous);
        request_wildcards(&mut acl);
        for (key, facts) in devices.iter() {
            if facts.takes_edge_desired {
                let _ = writeln!(acl, "topic deny $hw/events/device/{key}/twin/update");
                let _ = writeln!(acl, "topic deny $hw/events/device/{}/twin/update", key.name);
            }
        }
    }
    let _ = write!(
        acl,
        "\n# The agent.\nuser {}\ntopic readwrite $hw/#\ntopic readwrite $ke/#\ntopic readwrite edgetwin/#\n",
        agent.username
    );
    for (index, client) in policy.clients().iter().enumerate() {
        let _ = write!(acl, "\nuser {}\n", client.name);
        let who = Principal::Client(index);
        grants(&mut acl, policy, who);
        if client.serves_any() {
            request_wildcards(&mut acl);
            continue;
        }
        for (key, _) in devices.iter() {
            let topic = format!("$hw/events/device/{key}/twin/update");
            if !policy.may_publish(who, &topic, devices) {
                continue;
            }
            let mut ids = vec![key.to_string()];
            if devices.name_is_unique(&key.name) {
                ids.push(key.name.clone());
            }
            for id in ids {
                for event in ["twin/update", "twin/get", "state/update"] {
                    let _ = writeln!(acl, "topic write $hw/events/device/{id}/{event}");
                }
                let _ = writeln!(acl, "topic write $ke/events/device/{id}/data/update");
            }
        }
    }

    let mut conf = format!(
        "# The edgetwin bus policy of node {node}: include these lines in mosquitto.conf.\n\
         allow_anonymous {}\n\
         password_file {}\n\
         acl_file {}\n",
        policy.anonymous(),
        dir.join("password_file").display(),
        dir.join("acl_file").display(),
    );
    if !policy.anonymous() {
        conf.push_str(
            "# Every client's id is its username: no client can take another's session.\n\
             use_username_as_clientid true\n",
        );
    }
    conf.push_str("# Small request/answer packets: no Nagle delay.\nset_tcp_nodelay true\n");
    MosquittoFiles {
        password_file,
        acl_file: acl,
        conf,
    }
}

/// The device requests of every device, in both id forms.
fn request_wildcards(acl: &mut String) {
    for event in ["twin/get", "state/update", "twin/update"] {
        let _ = writeln!(acl, "topic write $hw/events/device/+/{event}");
        let _ = writeln!(acl, "topic write $hw/events/device/+/+/{event}");
    }
    acl.push_str("topic write $ke/events/device/+/data/update\n");
    acl.push_str("topic write $ke/events/device/+/+/data/update\n");
}

/// The read grants, `membership/get` and the data topics of `who`.
fn grants(acl: &mut String, policy: &BusPolicy, who: Principal) {
    for filter in policy.read_grants(who) {
        let _ = writeln!(acl, "topic read {filter}");
    }
    let _ = writeln!(
        acl,
        "topic write $hw/events/node/{}/membership/get",
        policy.node()
    );
    for filter in policy.data_topics() {
        let _ = writeln!(acl, "topic readwrite {filter}");
    }
}

/// Standard base64 with padding (what mosquitto's password file holds).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn a_password_hash_is_what_mosquitto_passwd_writes() {
        // `mosquitto_passwd -b` wrote this line for alice/secret (salt +GCAXQC5Iq318QsQ).
        let expected = "alice:$7$101$+GCAXQC5Iq318QsQ$ITeZeCX/LXrybrbGC75fGKK7FHLZR0ppYvkN7Zlsry8kvf9NHYhfEquJbNbi9Zmhd5kybbpqCsIUWUz+Zv11fg==";
        let salt = [
            0xf8, 0x60, 0x80, 0x5d, 0x00, 0xb9, 0x22, 0xad, 0xf5, 0xf1, 0x0b, 0x10,
        ];
        assert_eq!(base64(&salt), "+GCAXQC5Iq318QsQ");
        let hash = pbkdf2_hmac_sha512(b"secret", &salt, ITERATIONS);
        assert_eq!(
            format!("alice:$7${ITERATIONS}${}${}", base64(&salt), base64(&hash)),
            expected
        );
    }
}
