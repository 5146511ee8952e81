using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Kernels.S4D;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// S4D against its peers on one machine: one S4D block against a softmax-attention block of the same width
/// (libtorch's scaled_dot_product_attention) over sequence lengths 1k–64k, the peak memory of kernel
/// generation (blocked Vandermonde against the materialised one), the exported graph's two ways of applying
/// a fixed kernel in ONNX Runtime (depthwise Conv against DFT), and batch scoring of an exported model in
/// ONNX Runtime against eager TorchSharp.
/// </summary>
internal static class S4DBenchmark
{
    public const string Description =
        "S4D block vs softmax attention (H=128, N=64, L=1k..64k), kernel memory, ONNX Conv vs DFT (L<=4096), exported-model scoring vs TorchSharp";

    private const int Width = 128;
    private const int StateSize = 64;
    private const int Heads = 4;
    private const double BudgetSeconds = 60;

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        var parts = (args.String("parts") ?? "blocks,memory,onnx,scoring").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int maxLength = args.Int("max-length", 65_536, 16);
        // One libtorch thread unless asked: on a shared 2-core machine two threads made the FFTs 3–20× slower.
        set_num_threads(args.Int("threads", 1));
        args.EnsureAllUsed();
        var unknown = parts.Except(new[] { "blocks", "memory", "onnx", "scoring" }).ToArray();
        if (unknown.Length > 0)
            throw new UsageException($"Unknown part(s) {string.Join(", ", unknown)}; the parts are blocks, memory, onnx, scoring.");

        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var report = new BenchmarkReport { Benchmark = "s4d", Machine = machine };
        report.Parameters["width"] = Width;
        report.Parameters["stateSize"] = StateSize;
        report.Parameters["attentionHeads"] = Heads;
        report.Parameters["torchThreads"] = get_num_threads();
        Console.WriteLine($"Torch threads {get_num_threads()}, logical cores {Environment.ProcessorCount}, load average {machine.LoadAverageAtStart?.ToString("F2", CultureInfo.InvariantCulture) ?? "n/a"}.");
        if (machine.LoadAverageAtStart > Environment.ProcessorCount / 2.0)
            report.Notes.Add($"Other processes were busy when the run began (load average {machine.LoadAverageAtStart:F2} on {Environment.ProcessorCount} logical cores); expect noisy numbers.");

        // Memory first, while little is resident: the peaks are measured above the process's resident set.
        if (parts.Contains("memory"))
            KernelMemory(report, maxLength);
        if (parts.Contains("blocks"))
            Blocks(report, maxLength);
        if (parts.Contains("onnx"))
            OnnxConvolution(report, Math.Min(maxLength, 4096));
        if (parts.Contains("scoring"))
            Scoring(report);

        foreach (var note in report.Notes)
            Console.WriteLine("note: " + note);
        report.Extra["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 1);
        Console.WriteLine($"Whole run: {total.Elapsed.TotalSeconds:F0} s.");
        if (jsonPath is not null)
            Harness.WriteJson(jsonPath, report);
        return 0;
    }

    /// <summary>One residual S4D block against one residual softmax-attention block, batch 1, forward and forward+backward.</summary>
    private static void Blocks(BenchmarkReport report, int maxLength)
    {
        Console.WriteLine($"One block, H = {Width}, batch 1 (S4D: N = {StateSize}, FFT convolution; attention: {Heads} heads, libtorch scaled_dot_product_attention):");
        manual_seed(1);
        using var s4d = new SequenceResidualBlock(new S4DLayer(Width, new S4DOptions { StateSize = StateSize }, 0, false),
            SequenceNorm.Create(SequenceNormalization.LayerNorm, Width), preNorm: true, dropout: 0);
        using var attention = new AttentionBlock(Width, Heads);
        var table = new ResultTable("L", "S4D fwd ms", "S4D fwd+bwd ms", "attention fwd ms", "attention fwd+bwd ms", "fwd ratio", "fwd+bwd ratio");
        var rows = new List<Dictionary<string, object?>>();
        var skipped = new List<string>();
        double? lastAttention = null;
        long lastLength = 0;
        foreach (int length in new[] { 1024, 4096, 16_384, 65_536 }.Where(l => l <= maxLength))
        {
            var x = randn(1, length, Width);
            var s4dForward = Time($"S4D forward L={length}", () => { using var _ = no_grad(); s4d.forward(x); });
            var s4dBoth = Time($"S4D fwd+bwd L={length}", () => BackwardOnce(s4d, x));
            Measurement? attForward = null, attBoth = null;
            // Attention is O(L²): skip a length whose predicted forward+backward time would pass the budget.
            double predicted = lastAttention is double t ? t * Math.Pow((double)length / lastLength, 2) : 0;
            if (predicted > BudgetSeconds * 1000)
            {
                skipped.Add($"attention at L = {length} (predicted {predicted / 1000:F0} s per forward+backward from L = {lastLength}, over the {BudgetSeconds:F0} s budget)");
            }
            else
            {
                attForward = Time($"attention forward L={length}", () => { using var _ = no_grad(); attention.forward(x); });
                attBoth = Time($"attention fwd+bwd L={length}", () => BackwardOnce(attention, x));
                lastAttention = attBoth.MedianMs;
                lastLength = length;
            }
            x.Dispose();
            table.AddRow(Harness.FormatCount(length), F(s4dForward.MedianMs), F(s4dBoth.MedianMs), attForward is null ? "skipped" : F(attForward.MedianMs),
                attBoth is null ? "skipped" : F(attBoth.MedianMs), attForward is null ? "-" : Harness.FormatRatio(s4dForward.SpeedupOver(attForward)),
                attBoth is null ? "-" : Harness.FormatRatio(s4dBoth.SpeedupOver(attBoth)));
            rows.Add(new Dictionary<string, object?>
            {
                ["length"] = length,
                ["s4dForward"] = Harness.Entry(s4dForward),
                ["s4dForwardBackward"] = Harness.Entry(s4dBoth),
                ["attentionForward"] = attForward is null ? null : Harness.Entry(attForward),
                ["attentionForwardBackward"] = attBoth is null ? null : Harness.Entry(attBoth),
            });
            Console.WriteLine($"  L = {length}: S4D {s4dForward.MedianMs:F1} / {s4dBoth.MedianMs:F1} ms, attention "
                + (attBoth is null ? "skipped" : $"{attForward!.MedianMs:F1} / {attBoth.MedianMs:F1} ms"));
        }
        table.Print(Console.Out);
        Console.WriteLine("ratio: attention's time over S4D's; above 1 means S4D is faster.");
        foreach (var s in skipped)
            report.Notes.Add("Skipped " + s + ".");
        report.Extra["blocks"] = rows;
        Console.WriteLine();
    }

    /// <summary>Peak resident memory of generating one layer's kernel, blocked against materialising [H, N/2, L].</summary>
    private static void KernelMemory(BenchmarkReport report, int maxLength)
    {
        Console.WriteLine($"Kernel generation, H = {Width}, N/2 = {StateSize / 2} complex modes, forward and backward (peak resident memory above the start):");
        if (!PeakMemory.Available)
        {
            report.Notes.Add("Kernel memory not measured: /proc/self/clear_refs is not writable here.");
            Console.WriteLine("  not measured (needs Linux /proc/self/clear_refs).");
            return;
        }
        manual_seed(2);
        using var layer = new S4DLayer(Width, new S4DOptions { StateSize = StateSize }, 0, false);
        var table = new ResultTable("L", "blocked MiB", "blocked ms", "blocked largest tensor MiB", "materialised MiB", "materialised ms", "[H,N/2,L] complex64 MiB");
        var rows = new List<Dictionary<string, object?>>();
        foreach (int length in new[] { 1024, 4096, 16_384, 65_536 }.Where(l => l <= maxLength))
        {
            double tensorMiB = (double)Width * (StateSize / 2) * length * 8 / (1 << 20);
            long block = S4DMath.BlockLength(length);
            // The blocked product's largest tensors: the powers [H, N/2, J] and [H, N/2, L/J], and the kernel [H, L] itself.
            double blockedTensorMiB = Math.Max((double)Width * (StateSize / 2) * Math.Max(block, (length + block - 1) / block) * 8, (double)Width * length * 4) / (1 << 20);
            var (blockedMiB, blockedMs) = PeakMemory.Measure(() => layer.Kernel(length).sum().backward());
            layer.zero_grad();
            double? naiveMiB = null, naiveMs = null;
            // The materialised product holds several [H, N/2, L] complex tensors at once (exponent, power, product, their gradients).
            if (tensorMiB * 6 < 4096)
            {
                (double m, double t) = PeakMemory.Measure(() => MaterialisedKernel(layer, length).sum().backward());
                (naiveMiB, naiveMs) = (m, t);
                layer.zero_grad();
            }
            else
            {
                report.Notes.Add($"Materialised kernel at L = {length} not run: it would hold several {tensorMiB:F0} MiB tensors (> 4 GiB).");
            }
            table.AddRow(Harness.FormatCount(length), F(blockedMiB), F(blockedMs), F(blockedTensorMiB), naiveMiB is double n ? F(n) : "skipped", naiveMs is double nt ? F(nt) : "-", F(tensorMiB));
            rows.Add(new Dictionary<string, object?>
            {
                ["length"] = length,
                ["blockedPeakMiB"] = Math.Round(blockedMiB, 1),
                ["blockedMs"] = Math.Round(blockedMs, 1),
                ["blockedLargestTensorMiB"] = Math.Round(blockedTensorMiB, 2),
                ["materialisedPeakMiB"] = naiveMiB is double v ? Math.Round(v, 1) : null,
                ["materialisedMs"] = naiveMs is double w ? Math.Round(w, 1) : null,
                ["vandermondeTensorMiB"] = Math.Round(tensorMiB, 1),
            });
        }
        table.Print(Console.Out);
        Console.WriteLine("Blocked: ℓ = bJ + j with J = 2^⌈log2 √L⌉, so only [H, N/2, √L]-sized powers exist.");
        report.Extra["kernelMemory"] = rows;
        Console.WriteLine();
    }

    /// <summary>The unblocked product 2·Re Σ_n C̃_n exp(ℓ·log Ā_n), materialising exp over [H, N/2, L].</summary>
    private static Tensor MaterialisedKernel(S4DLayer layer, long length)
    {
        var (logDA, dB) = layer.StateSpace.Discretize(S4DDiscretization.Zoh);
        var c = view_as_complex(layer.get_parameter("C")!)[0] * dB;
        var powers = (logDA.unsqueeze(-1) * arange(length, ScalarType.Float32)).exp();
        return (c.unsqueeze(-1) * powers).sum(1).real * 2;
    }

    /// <summary>
    /// A one-layer S4D model exported with the kernel applied by Conv, by ONNX's DFT operator and by the DFT as matrix
    /// products, timed in ONNX Runtime per row (what ML.NET's OnnxTransformer runs) and in batches of 32.
    /// </summary>
    private static void OnnxConvolution(BenchmarkReport report, int maxLength)
    {
        const int width = 64;
        var modes = new[] { S4DOnnxConvolution.Direct, S4DOnnxConvolution.Fourier, S4DOnnxConvolution.MatMulFourier };
        Console.WriteLine($"Applying a fixed kernel in ONNX Runtime (1 intra-op thread), one-layer S4D model, H = {width}, ms per row:");
        var table = new ResultTable("L", "Conv, 1 row", "DFT op, 1 row", "MatMul DFT, 1 row", "Conv, batch 32", "DFT op, batch 32", "MatMul DFT, batch 32", "Auto");
        var rows = new List<Dictionary<string, object?>>();
        manual_seed(3);
        using var network = new SequenceNetwork(1, 10, 1, new SequenceNetworkShape(width, 0, false), SequenceNormalization.LayerNorm, false,
            new S4DBackbone(new S4DOptions { StateSize = StateSize }));
        network.eval();
        var layers = network.Blocks.Select(b => (S4DLayer)b.Layer).ToArray();
        foreach (int length in new[] { 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 }.Where(l => l <= maxLength))
        {
            var layout = new SequenceLayout(1, length, 0);
            var row = new Dictionary<string, object?> { ["length"] = length };
            var cells = new List<string> { Harness.FormatCount(length) };
            var batchCells = new List<string>();
            foreach (var mode in modes)
            {
                foreach (var l in layers)
                    l.OnnxConvolution = mode;
                byte[] graph;
                using (no_grad())
                    graph = OnnxScoringBridge.BuildGraph(network, "Features", layout.RowShape, OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(10)), batched: true, layout);
                using var options = new SessionOptions { IntraOpNumThreads = 1 };
                using var session = new InferenceSession(graph, options);
                var rng = new Random(length);
                var one = Enumerable.Range(0, length).Select(_ => (float)rng.NextDouble()).ToArray();
                var batch = Enumerable.Range(0, 32 * length).Select(_ => (float)rng.NextDouble()).ToArray();
                int reps = length >= 2048 && mode == S4DOnnxConvolution.Direct ? 3 : 9;
                var m1 = Harness.Measure($"{mode} 1 row L={length}", () => RunOrt(session, one, 1, length), 2, reps, 1);
                var m32 = Harness.Measure($"{mode} batch 32 L={length}", () => RunOrt(session, batch, 32, length), 1, Math.Max(3, reps / 2), 32);
                cells.Add(F3(m1.MedianMs));
                batchCells.Add(F3(m32.MsPer(1)));
                row[mode + "OneRow"] = Harness.Entry(m1);
                row[mode + "Batch32"] = Harness.Entry(m32);
            }
            cells.AddRange(batchCells);
            cells.Add(length <= S4DOnnx.DirectUpTo ? "Conv" : "MatMul DFT");
            table.AddRow(cells.ToArray());
            rows.Add(row);
        }
        table.Print(Console.Out);
        Console.WriteLine($"The exporter's Auto mode uses Conv up to L = {S4DOnnx.DirectUpTo} and the MatMul DFT above.");
        report.Extra["onnxConvolution"] = rows;
        report.Parameters["onnxAutoDirectUpTo"] = S4DOnnx.DirectUpTo;
        Console.WriteLine();
    }

    /// <summary>A trained S4D classifier's exported graph in ONNX Runtime (batched) against eager TorchSharp, and ML.NET's per-row chain.</summary>
    private static void Scoring(BenchmarkReport report)
    {
        const int length = 1024, rows = 2048, classes = 4;
        Console.WriteLine($"Batch scoring of {Harness.FormatCount(rows)} sequences of L = {Harness.FormatCount(length)} by a 2-layer S4D classifier (H = 64, N = 64):");
        var ml = new MLContext(4);
        var data = SyntheticSequences(ml, 512, length, classes, seed: 4);
        var clock = Stopwatch.StartNew();
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(new SequenceTrainer.Options
        {
            ModelDimension = 64,
            NumberOfLayers = 2,
            NumberOfEpochs = 1,
            BatchSize = 32,
            Seed = 4,
        }).Fit(data);
        Console.WriteLine($"  trained 1 epoch on 512 rows in {clock.Elapsed.TotalSeconds:F1} s");
        var rng = new Random(5);
        var features = Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, length).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray();
        var network = model.Network;
        network.eval();

        using var onnx = new MemoryStream();
        model.SaveAsOnnx(onnx);
        using var session = new InferenceSession(onnx.ToArray());
        var results = new List<Measurement>
        {
            Harness.Measure("TorchSharp eager, batch 64", () => ScoreTorch(network, features, 64, length), 1, 5, rows),
            Harness.Measure("ONNX Runtime, batch 64", () => ScoreOrt(session, features, 64, length), 1, 5, rows),
            Harness.Measure("ONNX Runtime, batch 1", () => ScoreOrt(session, features, 1, length), 1, 3, rows),
        };
        var view = ml.Data.LoadFromEnumerable(features.Select(f => new SequenceRow { Features = f }), SequenceRow.Schema(length));
        results.Add(Harness.Measure("ML.NET Transform (per-row OnnxTransformer)", () => Drain(model.Transform(view)), 1, 3, rows));

        // The peer a time-series user would pick: MiniRocket's 9,996 PPV features and a stock linear classifier, managed code only.
        clock.Restart();
        var miniRocket = ml.Transforms.MiniRocket(seed: 4)
            .AppendCacheCheckpoint(ml)
            .Append(ml.Transforms.NormalizeMeanVariance("Features"))
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy())
            .Fit(data);
        Console.WriteLine($"  MiniRocket + LbfgsMaximumEntropy fitted on the same 512 rows in {clock.Elapsed.TotalSeconds:F1} s");
        report.Extra["miniRocketFitSeconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2);
        const int miniRocketRows = 256;
        var miniRocketView = ml.Data.LoadFromEnumerable(features.Take(miniRocketRows).Select(f => new SequenceRow { Features = f }), SequenceRow.Schema(length));
        results.Add(Harness.Measure($"MiniRocket + linear, ML.NET Transform ({miniRocketRows} rows)", () => Drain(miniRocket.Transform(miniRocketView)), 0, 1, miniRocketRows));
        var baseline = results[0];
        Harness.ThroughputTable(results, baseline, "TorchSharp eager", "sequences", 1000).Print(Console.Out);
        Harness.WarnIfNoisy(Console.Out, results);
        report.Results.AddRange(results.Select(m => Harness.Entry(m, baseline)));
        report.Extra["scoringBaseline"] = baseline.Name;
        report.Parameters["scoringLength"] = length;
        report.Parameters["scoringRows"] = rows;
        Console.WriteLine();
    }

    private static Measurement Time(string name, Action action)
    {
        var probe = Stopwatch.StartNew();
        action();
        double ms = probe.Elapsed.TotalMilliseconds;
        int reps = ms > 5_000 ? 1 : ms > 1_000 ? 3 : 5;
        return Harness.Measure(name, action, warmups: 0, repetitions: reps);
    }

    private static void BackwardOnce(nn.Module<Tensor, Tensor> block, Tensor x)
    {
        using var scope = NewDisposeScope();
        var input = x.detach().requires_grad_(true);
        block.forward(input).square().mean().backward();
        block.zero_grad();
    }

    private static void RunOrt(InferenceSession session, float[] values, int batch, int length)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(values, new long[] { batch, length });
        using var outputs = session.Run(new RunOptions(), new[] { "Features" }, new[] { input }, new[] { "Score" });
    }

    private static void ScoreOrt(InferenceSession session, float[][] rows, int batch, int length)
    {
        var buffer = new float[batch * length];
        for (int start = 0; start < rows.Length; start += batch)
        {
            int count = Math.Min(batch, rows.Length - start);
            for (int i = 0; i < count; i++)
                rows[start + i].CopyTo(buffer, i * length);
            using var input = OrtValue.CreateTensorValueFromMemory(buffer, new long[] { count, length });
            using var outputs = session.Run(new RunOptions(), new[] { "Features" }, new[] { input }, new[] { "Score" });
        }
    }

    private static void ScoreTorch(nn.Module<Tensor, Tensor> network, float[][] rows, int batch, int length)
    {
        using var _ = no_grad();
        var buffer = new float[batch * length];
        for (int start = 0; start < rows.Length; start += batch)
        {
            using var scope = NewDisposeScope();
            int count = Math.Min(batch, rows.Length - start);
            for (int i = 0; i < count; i++)
                rows[start + i].CopyTo(buffer, i * length);
            nn.functional.softmax(network.forward(tensor(buffer, new long[] { count, length, 1 })), 1).data<float>().ToArray();
        }
    }

    private static void Drain(IDataView scored)
    {
        var score = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor(new[] { score });
        var getter = cursor.GetGetter<VBuffer<float>>(score);
        VBuffer<float> value = default;
        while (cursor.MoveNext())
            getter(ref value);
    }

    /// <summary>Random walks whose drift depends on the class.</summary>
    private static IDataView SyntheticSequences(MLContext ml, int rows, int length, int classes, int seed)
    {
        var rng = new Random(seed);
        var data = Enumerable.Range(0, rows).Select(i =>
        {
            int c = i % classes;
            var x = new float[length];
            double v = 0;
            for (int t = 0; t < length; t++)
                x[t] = (float)(v += 0.05 * (c - classes / 2.0) + rng.NextDouble() - 0.5) / 10;
            return new SequenceRow { Class = c.ToString(CultureInfo.InvariantCulture), Features = x };
        }).ToList();
        var view = ml.Data.LoadFromEnumerable(data, SequenceRow.Schema(length));
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(SequenceRow.Class)).Fit(view).Transform(view);
    }

    private static string F(double v) => v.ToString(v >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture);

    private static string F3(double v) => v.ToString(v >= 100 ? "F0" : v >= 1 ? "F2" : "F3", CultureInfo.InvariantCulture);

    private sealed class SequenceRow
    {
        public string Class = "0";
        public float[] Features = Array.Empty<float>();

        public static SchemaDefinition Schema(int length)
        {
            var schema = SchemaDefinition.Create(typeof(SequenceRow));
            schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, length);
            return schema;
        }
    }

    /// <summary>x + W_o · softmax(QKᵀ/√d) V over heads, pre-norm, as libtorch's scaled_dot_product_attention computes it.</summary>
    private sealed class AttentionBlock : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.LayerNorm norm;
        private readonly TorchSharp.Modules.Linear qkv;
        private readonly TorchSharp.Modules.Linear output;
        private readonly int _heads;

        public AttentionBlock(int width, int heads) : base(nameof(AttentionBlock))
        {
            norm = nn.LayerNorm(width);
            qkv = nn.Linear(width, 3 * width);
            output = nn.Linear(width, width);
            _heads = heads;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            long b = input.shape[0], l = input.shape[1], h = input.shape[2];
            var parts = qkv.forward(norm.forward(input)).view(b, l, 3, _heads, h / _heads).permute(2, 0, 3, 1, 4);
            var attended = nn.functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
            return input + output.forward(attended.transpose(1, 2).reshape(b, l, h));
        }
    }

    /// <summary>Peak resident memory of an action, from Linux's VmHWM after resetting it through /proc/self/clear_refs.</summary>
    private static class PeakMemory
    {
        public static bool Available => File.Exists("/proc/self/clear_refs") && File.Exists("/proc/self/status");

        public static (double PeakMiB, double Ms) Measure(Action action)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ReadKiB("VmRSS");
            File.WriteAllText("/proc/self/clear_refs", "5");
            var clock = Stopwatch.StartNew();
            using (NewDisposeScope())
                action();
            double ms = clock.Elapsed.TotalMilliseconds;
            long peak = ReadKiB("VmHWM");
            return ((peak - before) / 1024.0, ms);
        }

        private static long ReadKiB(string field)
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            }
            throw new InvalidOperationException($"/proc/self/status has no {field} line.");
        }
    }
}
