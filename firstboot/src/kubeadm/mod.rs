//! kubeadm on masters and workers: the configuration files kiln writes for
//! it and the commands the agent runs.

pub mod command;
pub mod config;
pub mod yaml;

pub use config::KubeadmInputs;
