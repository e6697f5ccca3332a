//! Compiles `proto/onnx.proto` into Rust types with `protox` (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed) and `prost-build`.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = match protox::compile(["proto/onnx.proto"], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("cannot compile proto/onnx.proto: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(fds) {
        panic!("cannot generate Rust code for proto/onnx.proto: {e}");
    }
}
