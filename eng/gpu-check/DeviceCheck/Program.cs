using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.Hazy.Gpu.Cuda;
using Microsoft.ML.Hazy.Gpu.Kernels;
using Microsoft.ML.Hazy.Gpu.Runtime;

// The device check: `ptx --out DIR` writes (and, with a driver, loads) every kernel's PTX; `verify` runs the attention
// and Monarch kernels on device memory against float64 host references; `bench --json FILE` times them with CUDA events.
string command = args.Length > 0 ? args[0] : "verify";
string? Option(string name) => Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

if (command == "ptx")
{
    var dir = Option("--out") ?? "ptx";
    Directory.CreateDirectory(dir);
    var driver = CudaDriver.TryLoad(out var why);
    Console.WriteLine(why);
    foreach (var entry in KernelEntry.All)
    {
        var sw = Stopwatch.StartNew();
        var ptx = PtxCompiler.Compile(entry);
        File.WriteAllText(Path.Combine(dir, entry.Name + ".ptx"), ptx.Assembly);
        string loaded = "";
        if (driver is not null)
        {
            driver.MakeCurrent(0);
            driver.GetFunction(driver.LoadModule(ptx.Assembly), ptx.EntryName);
            loaded = " loaded+JIT ok";
        }
        Console.WriteLine($"{entry.Name,-34} {ptx.Assembly.Length,7} chars {sw.ElapsedMilliseconds,5} ms{loaded}");
    }
    return 0;
}

var cuda = CudaDriver.TryLoad(out var reason) ?? throw new InvalidOperationException(reason);
Console.WriteLine(reason);
cuda.MakeCurrent(0);
var backend = new CudaBackend(cuda);
bool tiny = args.Contains("--tiny");
int failures = 0;

if (command == "verify")
{
    var cases = new (string Name, int B, int H, int Lq, int Lk, int D, bool Causal, int[]? Lens, bool Sparse)[]
    {
        ("dense ragged", 2, 2, 77, 61, 64, false, null, false),
        ("causal Lq<Lk", 1, 3, 50, 130, 64, true, null, false),
        ("causal Lq>Lk", 1, 2, 130, 50, 32, true, null, false),
        ("key padding", 2, 2, 64, 96, 128, false, [40, 0], false),
        ("block sparse", 1, 2, 256, 256, 64, false, null, true),
    };
    foreach (var c in tiny ? cases.Take(2) : cases)
    {
        var (err, _) = RunAttention(c.B, c.H, c.Lq, c.Lk, c.D, c.Causal, c.Lens, c.Sparse, verify: true, repeats: 0);
        bool ok = err < 1e-4;
        failures += ok ? 0 : 1;
        Console.WriteLine($"attention {c.Name,-14} max |O − O64| = {err:E2} {(ok ? "ok" : "FAIL")}");
    }
    var (merr, _) = RunMonarch(37, 4, 8, 8, 8, 4, verify: true, repeats: 0);
    failures += merr < 1e-3 ? 0 : 1;
    Console.WriteLine($"monarch max |y − y64| = {merr:E2} {(merr < 1e-3 ? "ok" : "FAIL")}");
    return failures == 0 ? 0 : 1;
}

if (command == "bench")
{
    var results = new List<Dictionary<string, object>>();
    foreach (var (d, causal, sparse) in new[] { (64, false, false), (64, true, false), (64, false, true), (128, false, false) })
    {
        var (_, ms) = RunAttention(4, 16, 4096, 4096, d, causal, null, sparse, verify: false, repeats: 5);
        double density = causal ? 0.5 : sparse ? 0.5 : 1.0;
        double tflops = 4.0 * 4 * 16 * 4096.0 * 4096 * d * density / (ms * 1e-3) / 1e12;
        Console.WriteLine($"attention fwd B4 H16 L4096 d{d} {(causal ? "causal" : sparse ? "50% blocks" : "dense"),-10} {ms,8:F2} ms {tflops,6:F2} TFLOP/s");
        results.Add(new() { ["kernel"] = "attention_forward", ["d"] = d, ["mask"] = causal ? "causal" : sparse ? "block50" : "none", ["ms"] = ms, ["tflops"] = tflops });
    }
    var (_, mms) = RunMonarch(16384, 64, 64, 64, 64, 64, verify: false, repeats: 5);
    double mflops = 2.0 * 16384 * 4096 * 64 * 2 / (mms * 1e-3) / 1e12;
    Console.WriteLine($"monarch fwd 16384×4096, 64 blocks {mms,8:F2} ms {mflops,6:F2} TFLOP/s");
    results.Add(new() { ["kernel"] = "monarch_forward", ["ms"] = mms, ["tflops"] = mflops });
    if (Option("--json") is { } json)
        File.WriteAllText(json, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}

Console.Error.WriteLine($"unknown command '{command}' (ptx | verify | bench)");
return 2;

(double Error, double Ms) RunAttention(int b, int h, int lq, int lk, int d, bool causal, int[]? lens, bool sparse, bool verify, int repeats)
{
    var rng = new Random(1);
    float[] Rand(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }
    var q = Rand((long)b * h * lq * d); var k = Rand((long)b * h * lk * d); var v = Rand((long)b * h * lk * d);
    int br = 64, bc = 64, tr = (lq + br - 1) / br, tc = (lk + bc - 1) / bc;
    var mask = new int[tr * tc];
    for (int i = 0; i < tr; i++) for (int j = 0; j < tc; j++) mask[i * tc + j] = !sparse || ((i * 7 + j * 3) % 2 == 0) || i == 1 && j < 0 ? 1 : 0;
    if (sparse) for (int j = 0; j < tc; j++) mask[1 * tc + j] = 0;   // an empty block row
    var p = new AttentionParams { Heads = h, QueryLength = lq, KeyLength = lk, HeadDim = d, Scale = 1f / MathF.Sqrt(d), Causal = causal ? 1 : 0,
        HasKeyLengths = lens is null ? 0 : 1, HasBlockMask = sparse ? 1 : 0, QueryBlockSize = br, KeyBlockSize = bc, QueryBlocks = tr, KeyBlocks = tc };
    var dq = Upload(q); var dk = Upload(k); var dv = Upload(v);
    var dO = cuda.Alloc(q.Length * 4L); var dLse = cuda.Alloc((long)b * h * lq * 4);
    var dLens = Upload(lens ?? [0]); var dMask = Upload(mask);
    object[] argsOf() => [new DeviceView(dq, q.Length), new DeviceView(dk, k.Length), new DeviceView(dv, v.Length), new DeviceView(dO, q.Length),
        new DeviceView(dLse, (long)b * h * lq), new DeviceView(dLens, Math.Max(1, lens?.Length ?? 1)), new DeviceView(dMask, mask.Length), p];
    backend.Launch(KernelEntry.AttentionForward, 0, b * h * tr, br, argsOf());
    cuda.Synchronize();
    double error = 0, ms = 0;
    if (verify)
    {
        var o = new float[q.Length];
        cuda.CopyToHost<float>(o, dO);
        for (int bh = 0; bh < b * h; bh++)
            for (int i = 0; i < lq; i++)
            {
                int len = lens?[bh / h] ?? lk;
                var s = new double[lk]; double m = double.NegativeInfinity;
                for (int j = 0; j < lk; j++)
                {
                    bool visible = j < len && (!causal || j <= i + lk - lq) && (!sparse || mask[(i / br) * tc + j / bc] != 0);
                    if (!visible) { s[j] = double.NegativeInfinity; continue; }
                    double dot = 0; for (int c = 0; c < d; c++) dot += (double)q[((long)bh * lq + i) * d + c] * k[((long)bh * lk + j) * d + c];
                    s[j] = dot / Math.Sqrt(d); m = Math.Max(m, s[j]);
                }
                double l = 0; for (int j = 0; j < lk; j++) l += double.IsNegativeInfinity(s[j]) ? 0 : Math.Exp(s[j] - m);
                for (int c = 0; c < d; c++)
                {
                    double acc = 0;
                    if (l > 0) for (int j = 0; j < lk; j++) if (!double.IsNegativeInfinity(s[j])) acc += Math.Exp(s[j] - m) / l * v[((long)bh * lk + j) * d + c];
                    error = Math.Max(error, Math.Abs(acc - o[((long)bh * lq + i) * d + c]));
                }
            }
    }
    if (repeats > 0)
    {
        var start = cuda.CreateEvent(); var end = cuda.CreateEvent();
        cuda.Record(start);
        for (int r = 0; r < repeats; r++) backend.Launch(KernelEntry.AttentionForward, 0, b * h * tr, br, argsOf());
        cuda.Record(end);
        ms = cuda.Elapsed(start, end) / repeats;
        cuda.DestroyEvent(start); cuda.DestroyEvent(end);
    }
    foreach (var ptr in new[] { dq, dk, dv, dO, dLse, dLens, dMask }) cuda.Free(ptr);
    return (error, ms);
}

(double Error, double Ms) RunMonarch(int batch, int k, int q, int pp, int l, int s, bool verify, int repeats)
{
    int r = k * q / l;
    var rng = new Random(2);
    float[] Rand(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }
    var x = Rand((long)batch * k * pp); var w1 = Rand((long)k * q * pp); var w2 = Rand((long)l * s * r);
    var p = new MonarchParams { Batch = batch, K = k, Q = q, P = pp, L = l, S = s, R = r };
    var dx = Upload(x); var dw1 = Upload(w1); var dw2 = Upload(w2);
    var dy = cuda.Alloc((long)batch * l * s * 4); var dh = cuda.Alloc((long)batch * l * r * 4);
    object[] argsOf() => [new DeviceView(dx, x.Length), new DeviceView(dw1, w1.Length), new DeviceView(dw2, w2.Length),
        new DeviceView(dy, (long)batch * l * s), new DeviceView(dh, (long)batch * l * r), p];
    int groups = (int)(((long)batch * l + 63) / 64);
    backend.Launch(KernelEntry.MonarchForward, 0, groups, 64, argsOf());
    cuda.Synchronize();
    double error = 0, ms = 0;
    if (verify)
    {
        var y = new float[(long)batch * l * s];
        cuda.CopyToHost<float>(y, dy);
        for (int bi = 0; bi < batch; bi++)
            for (int li = 0; li < l; li++)
                for (int si = 0; si < s; si++)
                {
                    double acc = 0;
                    for (int ri = 0; ri < r; ri++)
                    {
                        int m = ri * l + li, kk = m / q, qq = m % q;
                        double hv = 0; for (int i = 0; i < pp; i++) hv += (double)w1[((long)kk * q + qq) * pp + i] * x[(long)bi * k * pp + kk * pp + i];
                        acc += w2[((long)li * s + si) * r + ri] * hv;
                    }
                    error = Math.Max(error, Math.Abs(acc - y[(long)bi * l * s + (long)si * l + li]));
                }
    }
    if (repeats > 0)
    {
        var start = cuda.CreateEvent(); var end = cuda.CreateEvent();
        cuda.Record(start);
        for (int i = 0; i < repeats; i++) backend.Launch(KernelEntry.MonarchForward, 0, groups, 64, argsOf());
        cuda.Record(end);
        ms = cuda.Elapsed(start, end) / repeats;
        cuda.DestroyEvent(start); cuda.DestroyEvent(end);
    }
    foreach (var ptr in new[] { dx, dw1, dw2, dy, dh }) cuda.Free(ptr);
    return (error, ms);
}

IntPtr Upload<T>(T[] host) where T : unmanaged
{
    var ptr = cuda.Alloc(host.LongLength * System.Runtime.InteropServices.Marshal.SizeOf<T>());
    cuda.CopyToDevice<T>(ptr, host);
    return ptr;
}
