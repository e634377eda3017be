//! When dev mode (`POST /dev/token`: sign in as any user by name) is on.
//! Asked for (a file's `dev_mode = true`, or `SWITCHBOARD_DEV_MODE`), it is
//! on wherever the hub listens. Otherwise it is on only in the embedded
//! default, for trying the hub out: no configuration file, no
//! `SWITCHBOARD_AUTH_*` variable (a deployment configured by environment),
//! and every listener on loopback.

use super::Config;

/// Whether dev mode is on only because this is the embedded default: no
/// file, and the environment says nothing of dev mode or identity.
pub(super) fn implicit(has_file: bool, env: &[(String, String)]) -> bool {
    let set = |prefix: &str| env.iter().any(|(key, _)| key.starts_with(prefix));
    !has_file && !set("SWITCHBOARD_DEV_MODE") && !set("SWITCHBOARD_AUTH_")
}

impl Config {
    /// Turns the embedded default's dev mode off when a listener is not
    /// on loopback: one who only tries the hub out does not expose a
    /// sign-in as anyone to the network. Called by `load`, and again by
    /// whoever changes `listen` afterwards (`serve --listen`). Dev mode
    /// asked for (in a file or `SWITCHBOARD_DEV_MODE`) is left as it is.
    pub fn settle_dev_mode(&mut self) {
        if !self.dev_mode_implicit || !self.dev_mode {
            return;
        }
        if let Some(open) = self.listen.iter().find(|a| !is_loopback(a)) {
            self.dev_mode = false;
            self.dev_mode_note = Some(format!(
                "dev_mode is off: the hub listens on {open}, beyond loopback, so the web \
                 client's sign-in by name is not offered (set dev_mode = true, or \
                 SWITCHBOARD_DEV_MODE=true, to have it anyway)"
            ));
        }
    }
}

/// Whether a listen address (`host:port`, `[v6]:port`) is on loopback
/// only: `localhost` or a loopback IP.
fn is_loopback(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::env;

    #[test]
    fn dev_mode_is_on_without_a_file_and_off_in_a_file_unless_set() {
        let config = Config::load(None, env(&[])).unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.dev_token_ttl_secs, 86_400);
        assert_eq!(config.web.dir, "");
        let config = Config::load(None, env(&[("SWITCHBOARD_DEV_MODE", "false")])).unwrap();
        assert!(!config.dev_mode);

        let dir = std::env::temp_dir().join(format!("sb-devmode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let without = dir.join("without.toml");
        std::fs::write(&without, "[web]\ndir = \"public\"\n").unwrap();
        let config = Config::load(Some(&without), env(&[])).unwrap();
        assert!(!config.dev_mode);
        assert_eq!(config.web.dir, "public");
        let config =
            Config::load(Some(&without), env(&[("SWITCHBOARD_DEV_MODE", "true")])).unwrap();
        assert!(config.dev_mode);
        let with = dir.join("with.toml");
        std::fs::write(&with, "dev_mode = true\ndev_token_ttl_secs = 60\n").unwrap();
        let config = Config::load(Some(&with), env(&[])).unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.dev_token_ttl_secs, 60);
        let config = Config::load(Some(&with), env(&[("SWITCHBOARD_DEV_MODE", "false")])).unwrap();
        assert!(!config.dev_mode);
        assert!(Config::load(None, env(&[("SWITCHBOARD_DEV_TOKEN_TTL_SECS", "0")])).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_embedded_default_keeps_dev_mode_to_loopback_and_to_no_configured_identity() {
        // A deployment configured by environment (no file): no dev mode.
        let config = Config::load(None, env(&[("SWITCHBOARD_AUTH_HS256_SECRET", "prod")])).unwrap();
        assert!(!config.dev_mode);
        assert!(!config.hub_config().identity.claims.accept_dev);
        let config = Config::load(None, env(&[("SWITCHBOARD_LISTEN", "0.0.0.0:3000")])).unwrap();
        assert!(!config.dev_mode, "beyond loopback");
        assert!(config.dev_mode_note.is_some());
        for open in ["[::]:3000", "192.168.1.5:3000", "example.com:3000"] {
            let mut config = Config::load(None, env(&[])).unwrap();
            assert!(config.dev_mode);
            config.listen = vec![open.to_owned()];
            config.settle_dev_mode();
            assert!(!config.dev_mode, "{open}");
        }
        for local in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "localhost:3000",
            "127.0.0.2:1",
        ] {
            let mut config = Config::load(None, env(&[])).unwrap();
            config.listen = vec![local.to_owned()];
            config.settle_dev_mode();
            assert!(config.dev_mode, "{local}");
            assert!(config.hub_config().identity.claims.accept_dev);
        }
        // Asked for: kept, wherever it listens.
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_DEV_MODE", "true"),
                ("SWITCHBOARD_LISTEN", "0.0.0.0:3000"),
            ]),
        )
        .unwrap();
        assert!(config.dev_mode);
    }
}
