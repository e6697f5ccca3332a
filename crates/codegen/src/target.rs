//! The machine tcc compiles for: an LLVM target machine and the CPU features kernels are shaped by.
//!
//! A [`Target`] is either the host (LLVM's name and feature string for the CPU it runs on) or
//! one of the x86-64 micro-architecture levels of the System V psABI (`x86-64`, `x86-64-v2`,
//! `x86-64-v3` for AVX2 and FMA, `x86-64-v4` for AVX-512). The named levels carry their feature
//! lists here, explicitly, for two reasons: LLVM's C API cannot say which features a CPU name
//! implies, and LLVM accepts an unknown CPU name with only a warning on standard error, so tcc
//! must know the names it accepts.

use std::collections::BTreeSet;
use std::fmt;

use inkwell::attributes::AttributeLoc;
use inkwell::targets::{
    CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine, TargetTriple,
};
use inkwell::values::FunctionValue;
use inkwell::OptimizationLevel;

use crate::error::{Error, Result};

/// Features of `x86-64` (level 1), as LLVM names them.
const X86_64_V1: &[&str] = &["cmov", "cx8", "fxsr", "mmx", "sse", "sse2"];
/// Features `x86-64-v2` adds to level 1.
const X86_64_V2: &[&str] = &[
    "cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3",
];
/// Features `x86-64-v3` adds to level 2: AVX2 and FMA among them.
const X86_64_V3: &[&str] = &[
    "avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave",
];
/// Features `x86-64-v4` adds to level 3: AVX-512 F, BW, CD, DQ, VL with 512-bit registers.
const X86_64_V4: &[&str] = &[
    "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "evex512",
];

/// The CPU names tcc accepts besides `host`, each with its features level by level.
const KNOWN_CPUS: &[(&str, &[&[&str]])] = &[
    ("x86-64", &[X86_64_V1]),
    ("x86-64-v2", &[X86_64_V1, X86_64_V2]),
    ("x86-64-v3", &[X86_64_V1, X86_64_V2, X86_64_V3]),
    ("x86-64-v4", &[X86_64_V1, X86_64_V2, X86_64_V3, X86_64_V4]),
];

/// The triple used for a named x86-64 CPU when the host is not an x86-64 machine.
const X86_64_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The CPU names [`Target::named`] accepts, besides `host` and `native`.
pub fn known_cpus() -> Vec<&'static str> {
    KNOWN_CPUS.iter().map(|(name, _)| *name).collect()
}

/// A parsed LLVM feature string such as `+sse2,+avx2,-avx512f`.
///
/// Features absent from the string count as disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    enabled: BTreeSet<String>,
    disabled: BTreeSet<String>,
}

impl CpuFeatures {
    /// Parses a comma-separated LLVM feature string; entries are `+name` or `-name`.
    ///
    /// An entry without a sign counts as enabled, as LLVM reads it; empty entries are ignored.
    pub fn parse(features: &str) -> Self {
        let mut parsed = CpuFeatures::default();
        for entry in features.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(name) = entry.strip_prefix('-') {
                parsed.enabled.remove(name);
                parsed.disabled.insert(name.to_owned());
            } else {
                let name = entry.strip_prefix('+').unwrap_or(entry);
                parsed.disabled.remove(name);
                parsed.enabled.insert(name.to_owned());
            }
        }
        parsed
    }

    /// Whether the feature (by its LLVM name, such as `avx2`) is enabled.
    pub fn has(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }

    /// Whether fused multiply-add (FMA3) is available.
    pub fn fma(&self) -> bool {
        self.has("fma")
    }

    /// Whether AVX-512 Foundation is available.
    pub fn avx512f(&self) -> bool {
        self.has("avx512f")
    }

    /// Whether AVX-512 DQ (`vreduceps`, `vrangeps`, 64-bit integer conversions) is available.
    pub fn avx512dq(&self) -> bool {
        self.has("avx512dq")
    }

    /// Whether AVX-512 VNNI (512-bit int8 dot products) is available.
    pub fn avx512_vnni(&self) -> bool {
        self.has("avx512vnni")
    }

    /// Whether AVX-VNNI (the VEX-encoded, 256-bit int8 dot products) is available.
    pub fn avx_vnni(&self) -> bool {
        self.has("avxvnni")
    }

    /// The widest vector register, in bits, that float code may use: 512, 256, 128, or 32.
    ///
    /// 512-bit registers need AVX-512F and must not be switched off with `-evex512`
    /// (LLVM 18 and later split AVX-512 into the instructions and the 512-bit registers).
    pub fn vector_bits(&self) -> u32 {
        if self.avx512f() && !self.disabled.contains("evex512") {
            512
        } else if self.has("avx") {
            256
        } else if self.has("sse") || self.has("sse2") {
            128
        } else {
            32
        }
    }

    /// The number of `f32` lanes in the widest vector register: 16, 8, 4, or 1.
    pub fn f32_lanes(&self) -> u32 {
        self.vector_bits() / 32
    }
}

/// The machine tcc compiles for: an LLVM target machine with its CPU and features.
pub struct Target {
    machine: TargetMachine,
    triple: String,
    cpu: String,
    features: String,
    parsed: CpuFeatures,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("triple", &self.triple)
            .field("cpu", &self.cpu)
            .field("f32_lanes", &self.f32_lanes())
            .field("fma", &self.has_fma())
            .field("avx512f", &self.has_avx512f())
            .field("avx512dq", &self.has_avx512dq())
            .field("avx512_vnni", &self.has_avx512_vnni())
            .field("avx_vnni", &self.has_avx_vnni())
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The CPU this process runs on, as LLVM detects it (like `-mcpu=native`).
    pub fn host() -> Result<Self> {
        let triple = TargetMachine::get_default_triple();
        LlvmTarget::initialize_native(&InitializationConfig::default()).map_err(|message| {
            Error::NoTarget {
                triple: triple_string(&triple),
                message,
            }
        })?;
        let cpu = TargetMachine::get_host_cpu_name().to_string();
        let features = TargetMachine::get_host_cpu_features().to_string();
        Self::create(triple, cpu, features)
    }

    /// A named x86-64 CPU from [`known_cpus`], such as `x86-64-v3` (AVX2) or `x86-64-v4` (AVX-512).
    ///
    /// `host` and `native` name the host, as in [`Target::host`].
    pub fn named(name: &str) -> Result<Self> {
        if name == "host" || name == "native" {
            return Self::host();
        }
        let Some((cpu, levels)) = KNOWN_CPUS.iter().find(|(cpu, _)| *cpu == name) else {
            return Err(Error::UnknownCpu {
                name: name.to_owned(),
                known: known_cpus(),
            });
        };
        let features = levels
            .iter()
            .flat_map(|level| level.iter())
            .map(|feature| format!("+{feature}"))
            .collect::<Vec<_>>()
            .join(",");
        LlvmTarget::initialize_x86(&InitializationConfig::default());
        let host = TargetMachine::get_default_triple();
        let triple = if host.as_str().to_bytes().starts_with(b"x86_64") {
            host
        } else {
            TargetTriple::create(X86_64_TRIPLE)
        };
        Self::create(triple, (*cpu).to_owned(), features)
    }

    /// Creates the LLVM target machine: position-independent code (for shared libraries), -O3.
    fn create(triple: TargetTriple, cpu: String, features: String) -> Result<Self> {
        let triple_text = triple_string(&triple);
        let llvm_target = LlvmTarget::from_triple(&triple).map_err(|message| Error::NoTarget {
            triple: triple_text.clone(),
            message: message.to_string(),
        })?;
        let machine = llvm_target
            .create_target_machine(
                &triple,
                &cpu,
                &features,
                OptimizationLevel::Aggressive,
                RelocMode::PIC,
                CodeModel::Default,
            )
            .ok_or_else(|| Error::TargetMachine {
                triple: triple_text.clone(),
                cpu: cpu.clone(),
            })?;
        let parsed = CpuFeatures::parse(&features);
        Ok(Target {
            machine,
            triple: triple_text,
            cpu,
            features,
            parsed,
        })
    }

    /// The LLVM target machine, for emitting code and running passes.
    pub fn machine(&self) -> &TargetMachine {
        &self.machine
    }

    /// The target triple, such as `x86_64-pc-linux-gnu`.
    pub fn triple(&self) -> &str {
        &self.triple
    }

    /// The LLVM CPU name, such as `x86-64-v3` or `znver4`.
    pub fn cpu(&self) -> &str {
        &self.cpu
    }

    /// The LLVM feature string the target machine was created with.
    pub fn feature_string(&self) -> &str {
        &self.features
    }

    /// The parsed features.
    pub fn features(&self) -> &CpuFeatures {
        &self.parsed
    }

    /// The widest vector register float code may use, in bits.
    pub fn vector_bits(&self) -> u32 {
        self.parsed.vector_bits()
    }

    /// The vector width in `f32` lanes: 16 with AVX-512F, 8 with AVX2, 4 with SSE.
    pub fn f32_lanes(&self) -> u32 {
        self.parsed.f32_lanes()
    }

    /// Whether fused multiply-add (FMA3) is available.
    pub fn has_fma(&self) -> bool {
        self.parsed.fma()
    }

    /// Whether AVX-512 Foundation is available.
    pub fn has_avx512f(&self) -> bool {
        self.parsed.avx512f()
    }

    /// Whether AVX-512 DQ is available.
    pub fn has_avx512dq(&self) -> bool {
        self.parsed.avx512dq()
    }

    /// Whether AVX-512 VNNI is available.
    pub fn has_avx512_vnni(&self) -> bool {
        self.parsed.avx512_vnni()
    }

    /// Whether AVX-VNNI (256-bit, VEX-encoded) is available.
    pub fn has_avx_vnni(&self) -> bool {
        self.parsed.avx_vnni()
    }

    /// Marks a function as compiled for this target, as clang does for `-march`.
    ///
    /// Sets `target-cpu` and `target-features`, and sets `min-legal-vector-width` (the width
    /// the kernel's explicit vectors need, as clang records it) and `prefer-vector-width` to
    /// [`Target::vector_bits`]. The last one matters: the tuning of several AVX-512 CPUs,
    /// `x86-64-v4` and `skylake-avx512` among them, prefers 256-bit vectors, so without it
    /// LLVM's own loop vectoriser uses ymm registers where zmm are available.
    pub fn annotate_function(&self, function: FunctionValue<'_>) {
        let context = function.get_type().get_context();
        let bits = self.vector_bits().to_string();
        for (key, value) in [
            ("target-cpu", self.cpu.as_str()),
            ("target-features", self.features.as_str()),
            ("min-legal-vector-width", bits.as_str()),
            ("prefer-vector-width", bits.as_str()),
        ] {
            function.add_attribute(
                AttributeLoc::Function,
                context.create_string_attribute(key, value),
            );
        }
    }
}

/// The triple as text; `TargetTriple`'s `Display` prints `TargetTriple("...")` instead.
fn triple_string(triple: &TargetTriple) -> String {
    triple.as_str().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_signs_and_later_entries_win() {
        let f = CpuFeatures::parse("+sse2,+avx,-avx512f,fma,+avx512f,-fma,");
        assert!(f.has("sse2"));
        assert!(f.has("avx"));
        assert!(
            f.avx512f(),
            "a later +avx512f overrides an earlier -avx512f"
        );
        assert!(!f.fma(), "a later -fma overrides an earlier fma");
        assert!(!f.has("avx2"), "absent features are disabled");
    }

    #[test]
    fn lanes_follow_the_widest_register() {
        assert_eq!(CpuFeatures::parse("").f32_lanes(), 1);
        assert_eq!(CpuFeatures::parse("+sse2").f32_lanes(), 4);
        assert_eq!(CpuFeatures::parse("+sse2,+avx,+avx2").f32_lanes(), 8);
        assert_eq!(CpuFeatures::parse("+avx,+avx512f").f32_lanes(), 16);
        assert_eq!(CpuFeatures::parse("+avx,+avx512f,-evex512").f32_lanes(), 8);
    }

    #[test]
    fn vnni_flavours_are_distinct() {
        let f = CpuFeatures::parse("+avxvnni");
        assert!(f.avx_vnni() && !f.avx512_vnni());
        let f = CpuFeatures::parse("+avx512vnni");
        assert!(f.avx512_vnni() && !f.avx_vnni());
    }

    #[test]
    fn named_levels_report_their_features() {
        let v3 = Target::named("x86-64-v3").unwrap();
        assert_eq!(v3.cpu(), "x86-64-v3");
        assert_eq!(v3.f32_lanes(), 8);
        assert!(v3.has_fma() && !v3.has_avx512f());
        assert!(!v3.has_avx512_vnni() && !v3.has_avx_vnni());

        let v4 = Target::named("x86-64-v4").unwrap();
        assert_eq!(v4.f32_lanes(), 16);
        assert!(v4.has_fma() && v4.has_avx512f());

        let v1 = Target::named("x86-64").unwrap();
        assert_eq!(v1.f32_lanes(), 4);
        assert!(!v1.has_fma());
    }

    #[test]
    fn unknown_cpu_is_an_error_naming_the_known_ones() {
        let err = Target::named("pentium-9000").unwrap_err();
        assert!(matches!(&err, Error::UnknownCpu { name, .. } if name == "pentium-9000"));
        let message = err.to_string();
        assert!(message.contains("pentium-9000"), "{message}");
        assert!(message.contains("x86-64-v4"), "{message}");
    }

    #[test]
    fn host_and_native_name_the_host() {
        let host = Target::host().unwrap();
        assert_eq!(Target::named("native").unwrap().cpu(), host.cpu());
        assert_eq!(Target::named("host").unwrap().cpu(), host.cpu());
        assert!(!host.cpu().is_empty());
        assert!(
            host.triple().contains('-'),
            "not a triple: {}",
            host.triple()
        );
        assert!(
            !host.triple().contains('"'),
            "not a triple: {}",
            host.triple()
        );
    }
}
