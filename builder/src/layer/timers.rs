//! The agent's periodic jobs as systemd timers: etcd snapshots
//! (`kiln-snapshot.timer`) and certificate renewal (`kiln-renew.timer`).

use kiln_node::{layout, renewal};

use super::{RoleLayer, Unit};

/// One periodic `kiln-firstboot COMMAND`: `<stem>.service` and `<stem>.timer`.
pub struct AgentTimer<'a> {
    pub stem: &'a str,
    /// What the service does, for its Description.
    pub what: &'a str,
    pub command: &'a str,
    /// Units the service runs after (besides the first-boot agent).
    pub after: &'a str,
    pub interval: u64,
}

pub fn add_agent_timer(layer: &mut RoleLayer, timer: AgentTimer) {
    let AgentTimer {
        stem,
        what,
        command,
        after,
        interval,
    } = timer;
    // systemd's default accuracy (1 min) would swallow short intervals.
    let accuracy = (interval / 10).clamp(1, 60);
    layer.add_unit(
        Unit {
            name: format!("{stem}.service"),
            contents: Some(format!(
                "[Unit]\n\
                 Description=kiln: {what}\n\
                 Wants={after}\n\
                 After={after} {agent_unit}\n\
                 \n\
                 [Service]\n\
                 Type=oneshot\n\
                 ExecStart={agent} {command}\n",
                agent_unit = layout::AGENT_UNIT,
                agent = layout::AGENT_BINARY,
            )),
            dropins: vec![],
        },
        false,
    );
    layer.add_unit(
        Unit {
            name: format!("{stem}.timer"),
            contents: Some(format!(
                "[Unit]\n\
                 Description=kiln: {what}, every {interval}s\n\
                 \n\
                 [Timer]\n\
                 OnBootSec={interval}s\n\
                 OnUnitActiveSec={interval}s\n\
                 AccuracySec={accuracy}s\n\
                 \n\
                 [Install]\n\
                 WantedBy=timers.target\n"
            )),
            dropins: vec![],
        },
        true,
    );
}

/// `kiln-renew.timer`: looks at the node's certificates
/// [`renewal::LOOKS_PER_WINDOW`] times per renewal window, within the
/// period bounds of [`renewal::timer_period`].
pub fn add_renew_timer(layer: &mut RoleLayer, renew_before_seconds: u64) {
    add_agent_timer(
        layer,
        AgentTimer {
            stem: "kiln-renew",
            what: "renew this node's kiln-issued certificates before they expire",
            command: "renew",
            after: "network-online.target",
            interval: renewal::timer_period(renew_before_seconds),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_node::node_config::Role;

    #[test]
    fn renewal_looks_four_times_per_window() {
        let mut layer = RoleLayer::new(Role::Master);
        add_renew_timer(&mut layer, 120 * 86_400);
        let timer = layer.units["kiln-renew.timer"].contents.clone().unwrap();
        assert!(timer.contains("OnUnitActiveSec=3600s\n"), "{timer}");
        let mut short = RoleLayer::new(Role::Etcd);
        add_renew_timer(&mut short, 200);
        let timer = short.units["kiln-renew.timer"].contents.clone().unwrap();
        assert!(timer.contains("OnUnitActiveSec=50s\n"), "{timer}");
        let service = short.units["kiln-renew.service"].contents.clone().unwrap();
        assert!(service.contains("ExecStart=/usr/bin/kiln-firstboot renew\n"));
    }
}
