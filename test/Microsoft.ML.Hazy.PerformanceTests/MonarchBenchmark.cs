using System.Diagnostics;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Layers.Monarch;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>MonarchLinear (fused kernel and two-bmm reference) against a dense TorchSharp Linear of the same shape.</summary>
internal static class MonarchBenchmark
{
    public const string Description =
        "MonarchLinear forward and forward+backward (fused CPU kernel with its fused backward, fused forward with the bmm backward, and the reference two-bmm path) vs a dense nn.Linear, n in {1024, 4096}, batch in {10, 1000}, nblocks in {4, 16, 32, 64}.";

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
        Console.WriteLine($"Median of {repetitions} runs after 1 warm-up, dense/fused/fused+bmm-backward/bmm interleaved in each round; speed-up = dense median / Monarch median (above 1: Monarch faster).");
        Console.WriteLine();

        var table = new ResultTable("n", "batch", "nblocks", "params (M/dense)", "FLOP ratio", "dense fwd ms", "fused fwd ms", "fused fwd x", "bmm fwd ms", "bmm fwd x",
            "dense f+b ms", "fused f+b ms", "fused f+b x", "fused+bmm-bwd f+b ms", "fused+bmm-bwd f+b x", "bmm f+b ms", "bmm f+b x", "max |fused-bmm|");
        var measurements = new List<ResultEntry>();
        foreach (int n in Widths)
            foreach (int batch in Batches)
            {
                using var dense = nn.Linear(n, n);
                using var x = randn(batch, n);
                using var input = x.detach().clone().requires_grad_();
                foreach (int blocks in BlockCounts)
                {
                    using var monarch = new MonarchLinear(n, n, blocks);
                    string name = $"monarch n={n} batch={batch} nblocks={blocks}";
                    double agreement;
                    using (no_grad())
                    {
                        monarch.UseFusedKernel = true;
                        using var a = monarch.forward(x);
                        monarch.UseFusedKernel = false;
                        using var b = monarch.forward(x);
                        using var d = (a - b).abs().max();
                        agreement = d.item<float>();
                    }
                    // The three contenders alternate within each repetition, so a burst of load from other processes hits all of them.
                    var forward = Interleaved(repetitions, batch,
                        ($"dense n={n} batch={batch} forward", () => Forward(dense, x)),
                        (name + " fused forward", () => { monarch.UseFusedKernel = true; Forward(monarch, x); }),
                        (name + " bmm forward", () => { monarch.UseFusedKernel = false; Forward(monarch, x); }));
                    var train = Interleaved(repetitions, batch,
                        ($"dense n={n} batch={batch} forward+backward", () => ForwardBackward(dense, input)),
                        (name + " fused forward+backward", () => { monarch.UseFusedKernel = true; WithFusedBackward(monarch, true, () => ForwardBackward(monarch, input)); }),
                        (name + " fused forward+bmm backward", () => { monarch.UseFusedKernel = true; WithFusedBackward(monarch, false, () => ForwardBackward(monarch, input)); }),
                        (name + " bmm forward+backward", () => { monarch.UseFusedKernel = false; ForwardBackward(monarch, input); }));
                    var (denseForward, fusedForward, bmmForward) = (forward[0], forward[1], forward[2]);
                    var (denseTrain, fusedTrain, bmmBackwardTrain, bmmTrain) = (train[0], train[1], train[2], train[3]);
                    long denseParams = (long)n * n + n;
                    double paramRatio = (double)monarch.ParameterCount / denseParams;
                    double flopRatio = (double)(monarch.BlockDiagonal1.numel() + monarch.BlockDiagonal2.numel()) / ((long)n * n);
                    table.AddRow(n.ToString(), batch.ToString(), blocks.ToString(), paramRatio.ToString("F4"), flopRatio.ToString("F4"),
                        Ms(denseForward), Ms(fusedForward), Harness.FormatRatio(fusedForward.SpeedupOver(denseForward)),
                        Ms(bmmForward), Harness.FormatRatio(bmmForward.SpeedupOver(denseForward)),
                        Ms(denseTrain), Ms(fusedTrain), Harness.FormatRatio(fusedTrain.SpeedupOver(denseTrain)),
                        Ms(bmmBackwardTrain), Harness.FormatRatio(bmmBackwardTrain.SpeedupOver(denseTrain)),
                        Ms(bmmTrain), Harness.FormatRatio(bmmTrain.SpeedupOver(denseTrain)), agreement.ToString("E1"));
                    var details = new Dictionary<string, object?>
                    {
                        ["n"] = n, ["batch"] = batch, ["nblocks"] = blocks, ["parameters"] = monarch.ParameterCount,
                        ["denseParameters"] = denseParams, ["flopRatio"] = Math.Round(flopRatio, 5), ["maxAbsDiffFusedVsBmm"] = agreement,
                    };
                    measurements.Add(Harness.Entry(denseForward, null, details));
                    measurements.Add(Harness.Entry(denseTrain, null, details));
                    measurements.Add(Harness.Entry(fusedForward, denseForward, details));
                    measurements.Add(Harness.Entry(bmmForward, denseForward, details));
                    measurements.Add(Harness.Entry(fusedTrain, denseTrain, details));
                    measurements.Add(Harness.Entry(bmmBackwardTrain, denseTrain, details));
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

    /// <summary>One warm-up of each, then <paramref name="repetitions"/> rounds that time each contender once, in turn.</summary>
    private static Measurement[] Interleaved(int repetitions, long items, params (string Name, Action Run)[] contenders)
    {
        foreach (var c in contenders)
            c.Run();
        var samples = contenders.Select(_ => new List<double>()).ToArray();
        for (int rep = 0; rep < repetitions; rep++)
        {
            for (int i = 0; i < contenders.Length; i++)
            {
                long start = Stopwatch.GetTimestamp();
                contenders[i].Run();
                samples[i].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        }
        return contenders.Select((c, i) => new Measurement(c.Name, samples[i], 1, items)).ToArray();
    }

    // The registry's CPU provider with the fused C# backward, and the same with the bmm backward (the default).
    private static readonly CpuSimdKernels FusedBackwardKernels = new(new CpuKernelOptions { FusedMonarchBackward = true });
    private static readonly CpuSimdKernels BmmBackwardKernels = new(new CpuKernelOptions { FusedMonarchBackward = false });

    /// <summary>Runs <paramref name="run"/> with <paramref name="layer"/>'s fused kernel taking the fused C# backward or the bmm one.</summary>
    private static void WithFusedBackward(MonarchLinear layer, bool fused, Action run)
    {
        layer.Kernels = fused ? FusedBackwardKernels : BmmBackwardKernels;
        try
        {
            run();
        }
        finally
        {
            layer.Kernels = null;
        }
    }

    private static void Forward(nn.Module<Tensor, Tensor> module, Tensor x)
    {
        using var _ = no_grad();
        using var y = module.forward(x);
    }

    private static void ForwardBackward(nn.Module<Tensor, Tensor> module, Tensor input)
    {
        module.zero_grad();
        input.grad?.zero_();
        using var scope = NewDisposeScope();
        var loss = module.forward(input).sum();
        loss.backward();
    }
}
