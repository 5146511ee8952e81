using System.Diagnostics;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// Training images per second of the contrastive objectives against cross-entropy on the same CNN encoder and batch
/// (the contrastive sample's: 1×28×28, filters 32 and 64, embedding 64, batch 128), and the loss alone at batch 128, 512
/// and 2048 against one spread training step.
/// </summary>
internal static class ContrastiveBenchmark
{
    public const string Description =
        "Contrastive training steps (CE, SupCon, spread, CE+AE) on the sample's CNN at batch 128: images/s and ratio to CE; the loss alone at batch 128/512/2048";

    private const int Side = 28;
    private const int Pixels = Side * Side;
    private const int Batch = 128;

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        int repetitions = args.Int("repetitions", 5);
        int threads = args.Int("threads", 0, min: 0);
        args.EnsureAllUsed();
        if (threads > 0)
            set_num_threads(threads);
        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var notes = new List<string>();
        Harness.NoteIfBusy(machine, notes);

        var rand = new Random(2);
        var x = Enumerable.Range(0, Batch * Pixels).Select(_ => (float)rand.NextDouble()).ToArray();
        var y = Enumerable.Range(0, Batch).Select(i => (long)(i % 3)).ToArray();
        var objectives = new (string Name, ContrastiveTrainer.Options Options)[]
        {
            ("CE (peer)", ContrastiveTrainer.Options.CrossEntropy()),
            ("SupCon", ContrastiveTrainer.Options.SupCon()),
            ("SupCon+cNCE (spread)", ContrastiveTrainer.Options.Spread()),
            ("CE+AE", ContrastiveTrainer.Options.Autoencoder()),
        };
        var steps = new List<Measurement>();
        foreach (var (name, o) in objectives)
        {
            o.Encoder = ContrastiveEncoder.Cnn;
            o.Height = Side;
            o.Width = Side;
            o.Filters = [32, 64];
            var head = new EmbeddingHead(64, true);
            using var generator = new Generator(1);
            using var network = new ContrastiveNetwork(ContrastiveNetwork.EncoderFactory(o, Pixels, 64), head, 3, Pixels, o.ReconstructionWeight > 0 ? o.DecoderHiddenLayers : null);
            TrainingRandom.Initialize(network, generator);
            network.Generator = generator;
            network.train();
            var objective = new ContrastiveObjective(() => network, o);
            using var optimizer = optim.Adam(network.parameters(), 1e-3);
            Console.WriteLine($"timing {name} ...");
            steps.Add(Harness.Measure(name, () =>
            {
                using var scope = NewDisposeScope();
                using var batch = new TensorBatch(tensor(x, new long[] { Batch, Pixels }), tensor(y), null, Batch);
                optimizer.zero_grad();
                var loss = objective.Loss(b => network.forward(b.Features), batch);
                loss.backward();
                optimizer.step();
            }, warmups: 1, repetitions: repetitions, itemsPerRun: Batch));
        }
        var peer = steps[0];
        var spreadStep = steps[2];

        var lossTimes = new List<Measurement>();
        foreach (int b in new[] { 128, 512, 2048 })
        {
            var z = Enumerable.Range(0, 2 * b * 64).Select(_ => (float)(rand.NextDouble() * 2 - 1)).ToArray();
            var labels = Enumerable.Range(0, b).Select(i => (long)(i % 3)).ToArray();
            var loss = ContrastiveLoss.Spread();
            lossTimes.Add(Harness.Measure($"spread loss, batch {b}", () =>
            {
                using var scope = NewDisposeScope();
                var both = tensor(z, new long[] { 2 * b, 64 }).requires_grad_(true);
                var parts = both.chunk(2, 0);
                loss.Compute(parts[0], parts[1], tensor(labels)).backward();
            }, warmups: 1, repetitions: repetitions, itemsPerRun: b));
        }

        Console.WriteLine();
        Console.WriteLine($"Training steps at batch {Batch} (1×{Side}×{Side}, CNN filters 32, 64, embedding 64), median of {repetitions}; libtorch threads {get_num_threads()}:");
        var table = new ResultTable("objective", "images/s", "ms per step", "speed vs CE");
        foreach (var m in steps)
            table.AddRow(m.Name, Harness.FormatCount((long)Math.Round(m.ItemsPerSecond)), m.MedianMs.ToString("F1"), Harness.FormatRatio(m.SpeedupOver(peer)));
        table.Print(Console.Out);
        Console.WriteLine("Contrastive objectives encode two views per image, so about half CE's images/s is expected.");
        Console.WriteLine();
        var lossTable = new ResultTable("loss (forward + backward)", "ms", "share of one spread step at batch 128");
        foreach (var m in lossTimes)
            lossTable.AddRow(m.Name, m.MedianMs.ToString("F2"), (m.MedianMs / spreadStep.MedianMs).ToString("P1"));
        lossTable.Print(Console.Out);
        Harness.WarnIfNoisy(Console.Out, steps.Concat(lossTimes));
        Console.WriteLine($"Whole run: {total.Elapsed.TotalSeconds:F0} s.");

        if (jsonPath is not null)
        {
            var report = new BenchmarkReport
            {
                Benchmark = "contrastive",
                Machine = machine,
                Parameters = new() { ["batch"] = Batch, ["image"] = $"1x{Side}x{Side}", ["network"] = "CNN filters 32, 64, kernel 3, stride 2, embedding 64", ["repetitions"] = repetitions },
                Baseline = peer.Name,
                Results = steps.Concat(lossTimes).Select(m => Harness.Entry(m, peer)).ToList(),
                Extra = new() { ["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 2) },
                Notes = notes,
            };
            Harness.WriteJson(jsonPath, report);
        }
        return 0;
    }
}
