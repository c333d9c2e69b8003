//! Prints the ops check graph's stages as JSON, `{ "stage": [values…] }`, computed natively:
//! `cargo run --example ops_check -- --device cpu|wgpu`. The browser test compares WebGPU with it.

use burn::tensor::{Device, DeviceKind, try_read_sync};
use sdxl_web::ops_check::run;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["--device", "cpu"] => Device::flex(),
        ["--device", "wgpu"] => Device::wgpu(DeviceKind::DefaultDevice),
        _ => {
            eprintln!("usage: ops_check [--device cpu|wgpu]");
            std::process::exit(2);
        }
    };
    let stages = match try_read_sync(run(&device)).expect("native reads are synchronous") {
        Ok(stages) => stages,
        Err(error) => {
            eprintln!("the ops check failed: {error}");
            std::process::exit(1);
        }
    };
    let fields: Vec<String> = stages
        .iter()
        .map(|stage| {
            let values: Vec<String> = stage.values.iter().map(|v| format!("{v:?}")).collect();
            format!("  \"{}\": [{}]", stage.name, values.join(", "))
        })
        .collect();
    println!("{{\n{}\n}}", fields.join(",\n"));
}
