//! The host target's features against /proc/cpuinfo, an independent witness of the CPU.

mod support;

use support::cpuinfo_flags;
use tcc_codegen::Target;

#[test]
fn host_features_agree_with_proc_cpuinfo() {
    let flags = cpuinfo_flags();
    let host = Target::host().unwrap();
    let pairs = [
        ("fma", host.has_fma()),
        ("avx512f", host.has_avx512f()),
        ("avx512_vnni", host.has_avx512_vnni()),
        ("avx_vnni", host.has_avx_vnni()),
    ];
    for (flag, llvm) in pairs {
        assert_eq!(
            flags.contains(flag),
            llvm,
            "/proc/cpuinfo and LLVM ({host:?}) disagree about {flag}"
        );
    }
    let expected_lanes = if flags.contains("avx512f") {
        16
    } else if flags.contains("avx") {
        8
    } else {
        4
    };
    assert_eq!(host.f32_lanes(), expected_lanes, "{host:?}");
}
