using System.Diagnostics;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Interpretation;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// Images per second of every attribution method at batch 64 on the explain sample's CNN (1×28×28, filters 16 and 32),
/// against the peer every gradient method builds on: one plain TorchSharp forward + backward of the same batch.
/// The weights are random: speed does not depend on training.
/// </summary>
internal static class ExplainBenchmark
{
    public const string Description =
        "Attribution methods at batch 64 on the sample's Fashion-MNIST CNN: images/s, against one plain TorchSharp forward+backward";

    private const int Side = 28;
    private const int Pixels = Side * Side;
    private const int Batch = 64;

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        int repetitions = args.Int("repetitions", 3);
        int threads = args.Int("threads", 0, min: 0);
        args.EnsureAllUsed();
        if (threads > 0)
            set_num_threads(threads);
        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var notes = new List<string>();
        Harness.NoteIfBusy(machine, notes);

        manual_seed(1);
        using var network = new CnnNetwork(1, Side, Side, [16, 32], 3, 2, 1, 0.25, 10);
        network.eval();
        var rand = new Random(2);
        var x = Enumerable.Range(0, Batch * Pixels).Select(_ => (float)rand.NextDouble()).ToArray();
        var targets = Enumerable.Range(0, Batch).Select(i => i % 10).ToArray();
        var mean = new float[Pixels];
        Array.Fill(mean, 0.29f);
        var shapBaselines = Enumerable.Range(0, 50).Select(_ => Enumerable.Range(0, Pixels).Select(_ => (float)rand.NextDouble()).ToArray()).ToArray();

        var peer = Harness.Measure("TorchSharp forward + backward (peer)", () =>
        {
            using var scope = NewDisposeScope();
            var input = tensor(x, new long[] { Batch, Pixels }).requires_grad_(true);
            var selected = network.forward(input).gather(1, tensor(targets.Select(v => (long)v).ToArray()).unsqueeze(1)).sum();
            autograd.grad(new[] { selected }, new[] { input });
        }, warmups: 1, repetitions: repetitions, itemsPerRun: Batch);

        var methods = new List<(string Name, string Settings, IAttributionMethod Method)>();
        foreach (var method in Enum.GetValues<GradientMethod>())
        {
            var options = new GradientAttributionOptions { Method = method, BatchSize = Batch, SmoothGradSigma = 0.15 };
            IReadOnlyList<float[]> baselines = method switch
            {
                GradientMethod.IntegratedGradients or GradientMethod.DeepLift => [new float[Pixels], mean],
                GradientMethod.DeepLiftShap => shapBaselines,
                _ => [new float[Pixels]],
            };
            string settings = method switch
            {
                GradientMethod.SmoothGrad => "50 samples",
                GradientMethod.IntegratedGradients => "50 Gauss-Legendre steps × 2 baselines",
                GradientMethod.DeepLift => "2 baselines",
                GradientMethod.DeepLiftShap => "50 baselines",
                GradientMethod.Lrp => "ε = 0 linear, γ = 0.25 conv",
                _ => "",
            };
            methods.Add((method.ToString(), settings, new GradientAttribution(network, Pixels, options, baselines)));
        }
        var score = new TorchScoreFunction(network, Pixels);
        methods.Add(("Occlusion", "4×4 window, stride 2 (169 windows)",
            new OcclusionAttribution(score, new OcclusionAttribution.Options { Shape = [1, Side, Side], WindowShape = [1, 4, 4], Strides = [1, 2, 2] })));
        var superpixels = Enumerable.Range(0, Pixels).Select(p => p / Side / 4 * (Side / 4) + p % Side / 4).ToArray();
        methods.Add(("KernelSHAP", "49 superpixels, 512 evaluations",
            new KernelShapAttribution(score, new KernelShapAttribution.Options { NumberOfEvaluations = 512, FeatureGroups = superpixels, Seed = 3 })));

        var results = new List<(string Settings, Measurement M)>();
        foreach (var (name, settings, method) in methods)
        {
            Console.WriteLine($"timing {name} ...");
            results.Add((settings, Harness.Measure(name, () => method.Attribute(x, Batch, targets), warmups: 1, repetitions: repetitions, itemsPerRun: Batch)));
        }

        Console.WriteLine();
        Console.WriteLine($"Attribution of {Batch} images (1×{Side}×{Side}) on the CNN, median of {repetitions} runs; libtorch threads {get_num_threads()}:");
        var table = new ResultTable("method", "settings", "images/s", "ms per image", "cost in forward+backward passes");
        table.AddRow(peer.Name, "", Harness.FormatCount((long)peer.ItemsPerSecond), peer.MsPer(1).ToString("F3"), "1.00x");
        foreach (var (settings, m) in results)
            table.AddRow(m.Name, settings, Harness.FormatCount((long)Math.Round(m.ItemsPerSecond)), m.MsPer(1).ToString("F3"), Harness.FormatRatio(1 / m.SpeedupOver(peer)));
        table.Print(Console.Out);
        Console.WriteLine("cost: the method's time over the peer's, i.e. how many plain forward+backward passes of the batch one attribution costs.");
        Harness.WarnIfNoisy(Console.Out, results.Select(r => r.M).Append(peer));
        Console.WriteLine($"Whole run: {total.Elapsed.TotalSeconds:F0} s.");

        if (jsonPath is not null)
        {
            var report = new BenchmarkReport
            {
                Benchmark = "explain",
                Machine = machine,
                Parameters = new() { ["batch"] = Batch, ["image"] = $"1x{Side}x{Side}", ["network"] = "CNN filters 16, 32, kernel 3, stride 2", ["repetitions"] = repetitions },
                Baseline = peer.Name,
                Results = results.Select(r => Harness.Entry(r.M, peer, new Dictionary<string, object?> { ["settings"] = r.Settings })).Prepend(Harness.Entry(peer, peer)).ToList(),
                Extra = new() { ["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 2) },
                Notes = notes,
            };
            Harness.WriteJson(jsonPath, report);
        }
        return 0;
    }
}
