//! The program links with `bpf-linker`, which cargo does not know about:
//! rebuild when that binary changes (e.g. after `cargo xtask setup` rebuilt
//! it against another LLVM).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found: run `cargo xtask setup`"),
    }
}
