//! Declares the `fuzzing` cfg that cargo-fuzz sets, so the compiler knows it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
