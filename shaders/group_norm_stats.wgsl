// GroupNorm statistics: the mean and 1/sqrt(variance + eps) of each (batch, group).
//
// Algorithm: one workgroup of 256 invocations per (batch, group), whose `n` values are
// contiguous in the NCHW input (a group is C/G whole channels). Each invocation sums a strided
// slice of the values less the group's first value (a shift that keeps the sums near zero: f32
// sums of values with a large mean lose the mean's digits), a tree reduction in workgroup memory
// gives the mean; a second pass sums squared deviations from it (two passes, not E[x²] − E[x]²,
// which cancels catastrophically in f32). All arithmetic in f32.
// Limits: workgroups = batch · groups ≤ 65535 (one dispatch dimension); n < 2^32.
// Bindings: x (read), stats (write, 2 per group: mean, rstd), info = [n, bits(eps)].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read> info: array<u32>;

const WORKGROUP: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn reduce(local: u32) -> f32 {
    var stride = WORKGROUP / 2u;
    loop {
        if (stride == 0u) { break; }
        if (local < stride) {
            partial[local] = partial[local] + partial[local + stride];
        }
        workgroupBarrier();
        stride = stride / 2u;
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) group_id: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let n = info[0];
    let eps = bitcast<f32>(info[1]);
    let group = group_id.x;
    let start = group * n;

    let shift = x[start];
    var sum = 0.0;
    for (var i = local; i < n; i = i + WORKGROUP) {
        sum = sum + (x[start + i] - shift);
    }
    partial[local] = sum;
    workgroupBarrier();
    let mean = shift + reduce(local) / f32(n);

    var squares = 0.0;
    for (var i = local; i < n; i = i + WORKGROUP) {
        let d = x[start + i] - mean;
        squares = squares + d * d;
    }
    partial[local] = squares;
    workgroupBarrier();
    let variance = reduce(local) / f32(n);

    if (local == 0u) {
        stats[2u * group] = mean;
        stats[2u * group + 1u] = inverseSqrt(variance + eps);
    }
}
