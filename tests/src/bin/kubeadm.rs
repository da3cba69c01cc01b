//! A strict kubeadm stand-in for kiln's tests (never part of release images):
//! see `kiln_e2e::kubeadm`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(kiln_e2e::kubeadm::main(&args));
}
