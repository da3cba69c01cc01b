//! qemu virtual machines (software emulation, UEFI through OVMF) booting a
//! role's disk (raw, or qcow2 or VHD by the file's extension) read-only
//! (`snapshot=on`, so any number share one disk), each on a tap device of
//! a [`crate::bootnet::BootNet`] bridge, the serial console written to a
//! log, its Ignition config (if any) handed over through fw_cfg as
//! Ignition's qemu platform reads it. Dropping a VM
//! kills qemu by PID and deletes its tap device.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::bootnet::{mac, BootNet};
use crate::nspawn::{console_text, kill_tree};

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

pub struct Vm {
    pub name: String,
    pub log: PathBuf,
    bridge_ns: String,
    tap: String,
    child: Option<Child>,
}

impl Vm {
    /// Boots `disk` with MAC `mac(mac_last)` and `config` as its user-data;
    /// `name` is the test's label.
    pub fn boot(
        net: &BootNet,
        disk: &Path,
        config: Option<&Path>,
        name: &str,
        mac_last: u8,
        log: &Path,
    ) -> Vm {
        let tap = net.tap(name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.bridge_ns, "qemu-system-x86_64"])
            .args([
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "max",
                "-m",
                "768",
                "-smp",
                "1",
            ])
            .args([
                "-nographic",
                "-no-reboot",
                "-bios",
                OVMF,
                "-monitor",
                "none",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format={},snapshot=on",
                disk.display(),
                match disk.extension().and_then(|e| e.to_str()) {
                    Some("qcow2") => "qcow2",
                    // qemu's name for VHD
                    Some("vhd") => "vpc",
                    _ => "raw",
                }
            ))
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={}", mac(mac_last)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = config {
            cmd.arg("-fw_cfg").arg(format!(
                "name=opt/com.coreos/config,file={}",
                config.display()
            ));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting qemu for {name}: {e}"));
        Vm {
            name: name.to_owned(),
            log: log.to_owned(),
            bridge_ns: net.bridge_ns.clone(),
            tap,
            child: Some(child),
        }
    }

    pub fn console(&self) -> String {
        console_text(&self.log)
    }

    /// Pulls the plug: qemu is killed, the tap device deleted.
    pub fn destroy(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id());
            let _ = child.wait();
            let _ = Command::new("ip")
                .args(["-n", &self.bridge_ns, "link", "del", &self.tap])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.destroy();
    }
}
