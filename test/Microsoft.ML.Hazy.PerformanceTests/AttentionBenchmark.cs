using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// FlashAttention on the CPU against libtorch's scaled_dot_product_attention and naive attention (matmul, softmax,
/// matmul) in the same process: time, GFLOP/s and extra memory for B·H = 8, d ∈ {64, 128} over sequence lengths,
/// then block-sparse time against dense at several densities.
/// </summary>
internal static class AttentionBenchmark
{
    public const string Description =
        "FlashAttention CPU kernel vs libtorch SDPA vs naive attention (B·H = 8, d 64/128, L 512..16k): time, GFLOP/s, extra memory, block-sparse scaling";

    private const int Heads = 8;
    private const long NaiveMemoryLimit = 8_000_000_000;
    private static readonly int[] Lengths = [512, 1024, 2048, 4096, 8192, 16384];
    private static readonly int[] HeadDims = [64, 128];

    private sealed record Row(int D, int L, string Method, string Pass, double Ms, double Gflops, double ExtraMiB, Measurement M);

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        int maxLength = args.Int("max-length", 16384, min: 512);
        int minLength = args.Int("min-length", 512, min: 512);
        int[] headDims = args.Ints("head-dims", HeadDims, min: 1);
        // --sparse-length 0 leaves the block-sparse table out.
        int sparseLength = args.Int("sparse-length", Math.Min(4096, maxLength), min: 0);
        if (sparseLength is > 0 and < 512)
            throw new UsageException($"Option --sparse-length must be 0 (no block-sparse table) or at least 512; got {sparseLength}.");
        args.EnsureAllUsed();
        var lengths = Lengths.Where(x => x >= minLength && x <= maxLength).ToArray();

        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var notes = new List<string>();
        Console.WriteLine($"CPU kernel instruction set: {FlashAttentionKernel.BestSimdLevel}; torch threads {get_num_threads()}; {Environment.ProcessorCount} logical cores.");
        if (machine.LoadAverageAtStart > Environment.ProcessorCount / 2.0)
            Note(notes, $"Other processes were busy when the run began (load average {machine.LoadAverageAtStart:F2} on {Environment.ProcessorCount} cores): absolute numbers are low and noisy; the ratios measured in the same process are what matters.");

        double ceiling = MatmulGflops();
        Console.WriteLine($"fp32 matmul ceiling (libtorch 2048×2048×2048): {ceiling:F1} GFLOP/s");
        Console.WriteLine("FLOPs: forward 4·B·H·L²·d (causal off), forward+backward 3.5× that (backward 2.5×, recomputation not counted).");
        Console.WriteLine();

        // Untimed warm-up of every path (thread pool, JIT tiers), so the first measured size is not penalised.
        RunLength(new List<Row>(), new List<string>(), 64, 512, quiet: true);

        var rows = new List<Row>();
        foreach (int d in headDims)
        {
            foreach (int l in lengths)
            {
                RunLength(rows, notes, d, l);
                Console.Out.Flush();
            }
            PrintTables(rows.Where(r => r.D == d).ToList(), d, ceiling);
        }

        var sparse = sparseLength > 0 ? BlockSparse(sparseLength) : [];
        var fusion = FusedAgainstGeneral(headDims, Math.Min(4096, maxLength));

        Harness.WarnIfNoisy(Console.Out, rows.Select(r => r.M).Concat(sparse.Select(s => s.M)).Concat(fusion.Select(f => f.M)));
        Console.WriteLine($"Total {total.Elapsed.TotalSeconds:F0} s.");

        if (jsonPath is not null)
        {
            var report = new BenchmarkReport
            {
                Benchmark = "attention",
                Machine = machine,
                Parameters = { ["batchTimesHeads"] = Heads, ["headDims"] = headDims, ["lengths"] = lengths, ["sparseLength"] = sparseLength, ["simd"] = FlashAttentionKernel.BestSimdLevel.ToString() },
                Baseline = "sdpa",
                Results = rows.Select(r => Harness.Entry(r.M, null, new Dictionary<string, object?>
                {
                    ["d"] = r.D, ["length"] = r.L, ["method"] = r.Method, ["pass"] = r.Pass, ["gflops"] = Math.Round(r.Gflops, 2), ["extraMiB"] = Math.Round(r.ExtraMiB, 2),
                })).Concat(sparse.Select(s => Harness.Entry(s.M, null, new Dictionary<string, object?>
                {
                    ["density"] = s.Density, ["pass"] = s.Pass, ["relativeToDense"] = Math.Round(s.Relative, 4), ["target"] = Math.Round(1.5 * s.Density, 4),
                }))).Concat(fusion.Select(f => Harness.Entry(f.M, null, new Dictionary<string, object?>
                {
                    ["d"] = f.D, ["length"] = f.L, ["path"] = f.Path, ["simd"] = f.Simd, ["gflops"] = Math.Round(f.Gflops, 2),
                }))).ToList(),
                Extra = { ["matmulCeilingGflops"] = Math.Round(ceiling, 2) },
                Notes = notes,
            };
            Harness.WriteJson(jsonPath, report);
        }
        return 0;
    }

    private static void Note(List<string> notes, string text)
    {
        notes.Add(text);
        Console.WriteLine("note: " + text);
    }

    private static (int Warmups, int Reps) Plan(int l) => l <= 1024 ? (1, 5) : l <= 4096 ? (1, 3) : (0, 1);

    private static void RunLength(List<Row> rows, List<string> notes, int d, int l, bool quiet = false)
    {
        var (warm, reps) = Plan(l);
        double fwdFlops = 4.0 * Heads * l * (double)l * d;
        using var scope = NewDisposeScope();
        var g = new Generator(42);
        var q = randn([1, Heads, l, d], generator: g);
        var k = randn([1, Heads, l, d], generator: g);
        var v = randn([1, Heads, l, d], generator: g);
        var dO = randn([1, Heads, l, d], generator: g);
        long ioBytes = (long)Heads * l * d * 4; // one [B, H, L, d] float tensor
        double scale = 1 / Math.Sqrt(d);

        Tensor Naive(Tensor a, Tensor b, Tensor c)
        {
            using var s = scale.ToScalar();
            using var scores = a.matmul(b.transpose(-2, -1)).mul_(s);
            using var p = scores.softmax(-1);
            return p.matmul(c);
        }

        var methods = new (string Name, Func<Tensor, Tensor, Tensor, Tensor> F)[]
        {
            ("flash", (a, b, c) => FlashAttention.Apply(a, b, c)),
            ("sdpa", (a, b, c) => nn.functional.scaled_dot_product_attention(a, b, c, null, 0.0, false)),
            ("naive", Naive),
        };
        long naiveFwdBytes = 2L * Heads * l * l * 4, naiveBwdBytes = 4L * Heads * l * l * 4;
        foreach (bool backward in new[] { false, true })
        {
            string pass = backward ? "fwd+bwd" : "fwd";
            var runs = new List<(string Name, Action Once)>();
            foreach (var (name, f) in methods)
            {
                if (name == "naive" && (backward ? naiveBwdBytes : naiveFwdBytes) > NaiveMemoryLimit)
                {
                    if (!quiet)
                        Note(notes, $"naive {pass} skipped at d={d}, L={l}: it needs about {(backward ? naiveBwdBytes : naiveFwdBytes) / 1e9:F1} GB for the L×L matrices (limit {NaiveMemoryLimit / 1e9:F0} GB).");
                    continue;
                }
                runs.Add((name, () =>
                {
                    using var inner = NewDisposeScope();
                    if (!backward)
                    {
                        using var _ = no_grad();
                        f(q, k, v);
                        return;
                    }
                    var qg = q.detach().requires_grad_();
                    var kg = k.detach().requires_grad_();
                    var vg = v.detach().requires_grad_();
                    f(qg, kg, vg).backward([dO]);
                }));
            }

            // The methods take turns within each repetition, so a change in the machine's load hits them alike.
            var extra = runs.Select(r => ExtraMiB(r.Once, outputBytes: backward ? 4 * ioBytes : ioBytes)).ToArray();
            for (int w = 0; w < warm; w++)
                foreach (var r in runs)
                    r.Once();
            var samples = runs.Select(_ => new double[reps]).ToArray();
            for (int rep = 0; rep < reps; rep++)
                for (int i = 0; i < runs.Count; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    runs[i].Once();
                    samples[i][rep] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
            double flops = backward ? 3.5 * fwdFlops : fwdFlops;
            for (int i = 0; i < runs.Count; i++)
            {
                var m = new Measurement($"{runs[i].Name} {pass} d={d} L={l}", samples[i], warm, 1);
                rows.Add(new Row(d, l, runs[i].Name, pass, m.MedianMs, flops / (m.MedianMs * 1e6), extra[i], m));
                if (!quiet)
                    Console.WriteLine($"  d={d,3} L={l,5} {runs[i].Name,-5} {pass,-7} {m.MedianMs,10:F1} ms {flops / (m.MedianMs * 1e6),7:F1} GFLOP/s  extra {extra[i],8:F1} MiB");
            }
        }
    }

    // Peak resident memory of one call above the resident memory before it, less the outputs it returns.
    private static double ExtraMiB(Action once, long outputBytes)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        bool canReset = TryResetPeak();
        long before = ReadStatusKiB("VmRSS:");
        once();
        long peak = ReadStatusKiB("VmHWM:");
        if (!canReset || before < 0 || peak < 0)
            return double.NaN;
        return Math.Max(0, (peak - before) * 1024.0 - outputBytes) / (1024 * 1024);
    }

    private static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long ReadStatusKiB(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
        }
        return -1;
    }

    private static double MatmulGflops()
    {
        using var scope = NewDisposeScope();
        const int n = 2048;
        var a = randn(n, n);
        var b = randn(n, n);
        var m = Harness.Measure("matmul", () => { using var c = a.matmul(b); }, warmups: 1, repetitions: 5);
        return 2.0 * n * n * n / (m.MedianMs * 1e6);
    }

    private static void PrintTables(List<Row> rows, int d, double ceiling)
    {
        foreach (var pass in new[] { "fwd", "fwd+bwd" })
        {
            Console.WriteLine();
            Console.WriteLine($"d = {d}, {pass} (B·H = {Heads}); speedup = other's time / flash time; ceiling {ceiling:F0} GFLOP/s");
            var table = new ResultTable("L", "flash ms", "sdpa ms", "naive ms", "flash GF/s", "sdpa GF/s", "naive GF/s", "vs sdpa", "vs naive", "flash MiB", "sdpa MiB", "naive MiB");
            foreach (var l in rows.Select(r => r.L).Distinct())
            {
                Row? Get(string method) => rows.FirstOrDefault(r => r.L == l && r.Method == method && r.Pass == pass);
                var f = Get("flash");
                var s = Get("sdpa");
                var n = Get("naive");
                string Ms(Row? r) => r is null ? "-" : r.Ms.ToString("F1", CultureInfo.InvariantCulture);
                string Gf(Row? r) => r is null ? "-" : r.Gflops.ToString("F1", CultureInfo.InvariantCulture);
                string Mem(Row? r) => r is null || double.IsNaN(r.ExtraMiB) ? "-" : r.ExtraMiB.ToString("F1", CultureInfo.InvariantCulture);
                string Ratio(Row? other) => f is null || other is null ? "-" : Harness.FormatRatio(other.Ms / f.Ms);
                table.AddRow(l.ToString(CultureInfo.InvariantCulture), Ms(f), Ms(s), Ms(n), Gf(f), Gf(s), Gf(n), Ratio(s), Ratio(n), Mem(f), Mem(s), Mem(n));
            }
            table.Print(Console.Out);
        }
        Console.WriteLine();
    }

    private sealed record FusionRow(int D, int L, string Path, string Simd, double Gflops, Measurement M);

    // The kernel's forward on plain arrays through its fused AVX-512 step and through the general path (tiled GEMM,
    // row-wise softmax), for every head size: where the fused step does not apply (d > 64, or no AVX-512) both columns
    // time the general path, which is how the kernel chooses.
    private static List<FusionRow> FusedAgainstGeneral(int[] headDims, int l)
    {
        var result = new List<FusionRow>();
        var simd = FlashAttentionKernel.BestSimdLevel;
        var table = new ResultTable("d", "L", "instruction set", "fused ms", "general ms", "fused GF/s", "general GF/s", "fused / general");
        foreach (int d in headDims)
        {
            var shape = new AttentionShape(1, Heads, l, l, d);
            var rng = new Random(5);
            float[] Fill() => Enumerable.Range(0, (int)shape.QueryElements).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            float[] q = Fill(), k = Fill(), v = Fill(), o = new float[shape.QueryElements], lse = new float[shape.RowCount];
            var samples = new[] { new double[3], new double[3] };
            // The general path per call (what the provider option CpuKernelOptions.FusedAttentionForward sets).
            var paths = new[] { new FlashAttentionOptions(), new FlashAttentionOptions { FusedForward = false } };
            for (int rep = -1; rep < 3; rep++)
                for (int path = 0; path < 2; path++)
                {
                    long start = Stopwatch.GetTimestamp();
                    FlashAttentionKernel.Forward(shape, q, k, v, o, lse, paths[path]);
                    if (rep >= 0)
                        samples[path][rep] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
            double flops = 4.0 * Heads * l * (double)l * d;
            var fused = new Measurement($"kernel fused fwd d={d} L={l}", samples[0], 1, 1);
            var general = new Measurement($"kernel general fwd d={d} L={l}", samples[1], 1, 1);
            result.Add(new FusionRow(d, l, "fused", simd.ToString(), flops / (fused.MedianMs * 1e6), fused));
            result.Add(new FusionRow(d, l, "general", simd.ToString(), flops / (general.MedianMs * 1e6), general));
            table.AddRow(d.ToString(CultureInfo.InvariantCulture), l.ToString(CultureInfo.InvariantCulture), simd.ToString(),
                fused.MedianMs.ToString("F1", CultureInfo.InvariantCulture), general.MedianMs.ToString("F1", CultureInfo.InvariantCulture),
                (flops / (fused.MedianMs * 1e6)).ToString("F1", CultureInfo.InvariantCulture), (flops / (general.MedianMs * 1e6)).ToString("F1", CultureInfo.InvariantCulture),
                (general.MedianMs / fused.MedianMs).ToString("F2", CultureInfo.InvariantCulture) + "x");
        }
        Console.WriteLine($"Kernel forward, fused step against the general path (arrays, B·H = {Heads}; the fused step serves AVX-512 and d ≤ 64):");
        table.Print(Console.Out);
        Console.WriteLine();
        return result;
    }

    private sealed record SparseRow(double Density, string Pass, double Relative, Measurement M);

    private static List<SparseRow> BlockSparse(int l)
    {
        const int d = 64;
        var (warm, reps) = Plan(l);
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var q = randn([1, Heads, l, d], generator: g);
        var k = randn([1, Heads, l, d], generator: g);
        var v = randn([1, Heads, l, d], generator: g);
        var dO = randn([1, Heads, l, d], generator: g);
        int tiles = (l + FlashAttentionOptions.DefaultBlockSize - 1) / FlashAttentionOptions.DefaultBlockSize;
        var result = new List<SparseRow>();
        var table = new ResultTable("density", "pass", "ms", "time / dense", "target ≤ 1.5·density", "met");
        foreach (var pass in new[] { "fwd", "fwd+bwd" })
        {
            var runs = new List<(BlockSparseMask Mask, Action Once)>();
            foreach (double density in new[] { 1.0, 0.5, 0.25, 0.125 })
            {
                // Block-diagonal groups of density·tiles tiles: exactly that fraction of tiles, the same in every row.
                var mask = BlockSparseMask.BlockDiagonal(l, l, Math.Max(1, (int)Math.Round(density * tiles)));
                var options = new FlashAttentionOptions { BlockMask = mask };
                runs.Add((mask, () =>
                {
                    using var inner = NewDisposeScope();
                    if (pass == "fwd")
                    {
                        using var _ = no_grad();
                        FlashAttention.Apply(q, k, v, options);
                        return;
                    }
                    var qg = q.detach().requires_grad_();
                    var kg = k.detach().requires_grad_();
                    var vg = v.detach().requires_grad_();
                    FlashAttention.Apply(qg, kg, vg, options).backward([dO]);
                }));
            }
            for (int w = 0; w < warm; w++)
                foreach (var r in runs)
                    r.Once();
            var samples = runs.Select(_ => new double[reps]).ToArray();
            for (int rep = 0; rep < reps; rep++)
                for (int i = 0; i < runs.Count; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    runs[i].Once();
                    samples[i][rep] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
            var measured = runs.Select((r, i) => new Measurement($"block-sparse {pass} density={r.Mask.Density:F3} L={l}", samples[i], warm, 1)).ToArray();
            double denseMs = measured[0].MedianMs;
            for (int i = 0; i < runs.Count; i++)
            {
                var m = measured[i];
                double density = runs[i].Mask.Density, rel = m.MedianMs / denseMs;
                result.Add(new SparseRow(density, pass, rel, m));
                table.AddRow($"{100 * density:F1} %", pass, m.MedianMs.ToString("F1", CultureInfo.InvariantCulture), rel.ToString("F3", CultureInfo.InvariantCulture),
                    (1.5 * density).ToString("F3", CultureInfo.InvariantCulture), rel <= 1.5 * density ? "yes" : "NO");
            }
        }
        Console.WriteLine($"Block-sparse FlashAttention, block-diagonal masks, L = {l}, d = {d}, B·H = {Heads}:");
        table.Print(Console.Out);
        Console.WriteLine();
        return result;
    }
}
