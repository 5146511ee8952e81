using System.Diagnostics;
using Microsoft.ML.Hazy.Layers.Monarch;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>MonarchLinear (fused kernel and two-bmm reference) against a dense TorchSharp Linear of the same shape.</summary>
internal static class MonarchBenchmark
{
    public const string Description =
        "MonarchLinear forward and forward+backward (fused CPU kernel and the reference two-bmm path) vs a dense nn.Linear, n in {1024, 4096}, batch in {10, 1000}, nblocks in {4, 16, 32, 64}.";

    private static readonly int[] Widths = { 1024, 4096 };
    private static readonly int[] Batches = { 10, 1000 };
    private static readonly int[] BlockCounts = { 4, 16, 32, 64 };

    public static int Run(BenchmarkArgs args)
    {
        var jsonPath = args.String("json");
        int repetitions = args.Int("repetitions", 5);
        args.EnsureAllUsed();
        var machine = Harness.Machine();
        var clock = Stopwatch.StartNew();
        manual_seed(1);
        Console.WriteLine($"Monarch vs dense Linear, float32 on CPU, {get_num_threads()} libtorch threads, {Environment.ProcessorCount} cores, "
            + $"load average {machine.LoadAverageAtStart?.ToString("F1") ?? "n/a"}; fused kernel supported: {MonarchFusedKernel.IsSupported}.");
        Console.WriteLine($"Median of {repetitions} runs after 1 warm-up; speed-up = dense median / Monarch median (above 1: Monarch faster).");
        Console.WriteLine();

        var table = new ResultTable("n", "batch", "nblocks", "params (M/dense)", "FLOP ratio", "dense fwd ms", "fused fwd ms", "fused fwd x", "bmm fwd ms", "bmm fwd x",
            "dense f+b ms", "fused f+b ms", "fused f+b x", "bmm f+b ms", "bmm f+b x", "max |fused-bmm|");
        var measurements = new List<ResultEntry>();
        foreach (int n in Widths)
            foreach (int batch in Batches)
            {
                using var dense = nn.Linear(n, n);
                using var x = randn(batch, n);
                var denseForward = Forward($"dense n={n} batch={batch} forward", dense, x, repetitions);
                var denseTrain = ForwardBackward($"dense n={n} batch={batch} forward+backward", dense, x, repetitions);
                measurements.Add(Harness.Entry(denseForward));
                measurements.Add(Harness.Entry(denseTrain));
                foreach (int blocks in BlockCounts)
                {
                    using var monarch = new MonarchLinear(n, n, blocks);
                    string name = $"monarch n={n} batch={batch} nblocks={blocks}";
                    monarch.UseFusedKernel = true;
                    var fusedForward = Forward(name + " fused forward", monarch, x, repetitions);
                    var fusedTrain = ForwardBackward(name + " fused forward+backward", monarch, x, repetitions);
                    double agreement;
                    using (no_grad())
                    {
                        using var a = monarch.forward(x);
                        monarch.UseFusedKernel = false;
                        using var b = monarch.forward(x);
                        using var d = (a - b).abs().max();
                        agreement = d.item<float>();
                    }
                    var bmmForward = Forward(name + " bmm forward", monarch, x, repetitions);
                    var bmmTrain = ForwardBackward(name + " bmm forward+backward", monarch, x, repetitions);
                    long denseParams = (long)n * n + n;
                    double paramRatio = (double)monarch.ParameterCount / denseParams;
                    double flopRatio = (double)(monarch.BlockDiagonal1.numel() + monarch.BlockDiagonal2.numel()) / ((long)n * n);
                    table.AddRow(n.ToString(), batch.ToString(), blocks.ToString(), paramRatio.ToString("F4"), flopRatio.ToString("F4"),
                        Ms(denseForward), Ms(fusedForward), Harness.FormatRatio(fusedForward.SpeedupOver(denseForward)),
                        Ms(bmmForward), Harness.FormatRatio(bmmForward.SpeedupOver(denseForward)),
                        Ms(denseTrain), Ms(fusedTrain), Harness.FormatRatio(fusedTrain.SpeedupOver(denseTrain)),
                        Ms(bmmTrain), Harness.FormatRatio(bmmTrain.SpeedupOver(denseTrain)), agreement.ToString("E1"));
                    var details = new Dictionary<string, object?>
                    {
                        ["n"] = n, ["batch"] = batch, ["nblocks"] = blocks, ["parameters"] = monarch.ParameterCount,
                        ["denseParameters"] = denseParams, ["flopRatio"] = Math.Round(flopRatio, 5), ["maxAbsDiffFusedVsBmm"] = agreement,
                    };
                    measurements.Add(Harness.Entry(fusedForward, denseForward, details));
                    measurements.Add(Harness.Entry(bmmForward, denseForward, details));
                    measurements.Add(Harness.Entry(fusedTrain, denseTrain, details));
                    measurements.Add(Harness.Entry(bmmTrain, denseTrain, details));
                }
            }
        table.Print(Console.Out);
        Console.WriteLine();
        Console.WriteLine("Reference CPU numbers (HazyResearch/fly issue #11, MLP 10000x1024x512, batch 1000): forward 26.57 ms dense vs 10.29 (nblocks 4) / 5.67 ms (16), i.e. 2.6x / 4.7x; at batch 10 Monarch was slower (0.59 vs 1.16 / 1.37 ms).");
        Console.WriteLine($"Whole run: {clock.Elapsed.TotalSeconds:F0} s.");
        if (jsonPath is not null)
        {
            Harness.WriteJson(jsonPath, new BenchmarkReport
            {
                Benchmark = "monarch",
                Machine = machine,
                Baseline = "dense nn.Linear of the same shape and batch",
                Parameters = new() { ["widths"] = Widths, ["batches"] = Batches, ["nblocks"] = BlockCounts, ["repetitions"] = repetitions, ["warmups"] = 1 },
                Results = measurements,
                Notes = { "Ratios are dense median / Monarch median from the same process; the machine is shared, so compare ratios, not absolute times." },
            });
        }
        return 0;
    }

    private static string Ms(Measurement m) => m.MedianMs.ToString(m.MedianMs < 10 ? "F2" : "F1");

    private static Measurement Forward(string name, nn.Module<Tensor, Tensor> module, Tensor x, int repetitions) =>
        Harness.Measure(name, () =>
        {
            using var _ = no_grad();
            using var y = module.forward(x);
        }, warmups: 1, repetitions: repetitions, itemsPerRun: x.shape[0]);

    private static Measurement ForwardBackward(string name, nn.Module<Tensor, Tensor> module, Tensor x, int repetitions)
    {
        using var input = x.detach().clone().requires_grad_();
        return Harness.Measure(name, () =>
        {
            module.zero_grad();
            input.grad?.zero_();
            using var scope = NewDisposeScope();
            var loss = module.forward(input).sum();
            loss.backward();
        }, warmups: 1, repetitions: repetitions, itemsPerRun: x.shape[0]);
    }
}
