using System.Diagnostics;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// One training step (forward, loss, backward, AdamW step) with each mask penalty against a plain step on the same network
/// and batch: the CNN on 1×48×48 images and an S4D network on 1×256 sequences, batch 32, half of each row outside the mask.
/// </summary>
internal static class MasksBenchmark
{
    public const string Description = "Training step time of GradMask, RRR and ActDiff relative to a plain step (CNN 48×48 and S4D length 256, batch 32)";

    private const int Batch = 32;

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
        var head = OutputHead.For(PredictionKind.BinaryClassification);
        var entries = new List<ResultEntry>();
        var table = new ResultTable("network", "step", "ms per step", "ratio vs plain step");

        void Bench(string name, nn.Module<Tensor, Tensor> network, long[] shape, Tensor? lengths)
        {
            TrainingRandom.Initialize(network, new Generator(1));
            network.train();
            var generator = new Generator(2);
            var x = rand(shape, generator: generator);
            var y = rand(new long[] { Batch }, generator: generator).gt(0.5.ToScalar()).to(float32);
            var mask = ones(shape);
            long d = shape.Skip(1).Aggregate(1L, (a, b) => a * b);
            mask.view(Batch, d)[TensorIndex.Colon, TensorIndex.Slice(0, d / 2)] = zeros(Batch, d / 2);
            var columns = new Dictionary<string, Tensor> { [MaskPenaltyOptions.MaskBatchColumn] = mask };
            using var batch = new TensorBatch(x, y, lengths, Batch, columns);
            Func<TensorBatch, Tensor> forward = SupervisedTrainer.Forward(network);
            var options = new CnnTrainer.Options { Height = 1, Width = 1 };
            using var optimizer = TrainingLoop.CreateOptimizer(network, options);
            Measurement Step(string step, ITrainingObjective objective)
            {
                (objective as INetworkObjective)?.Attach(network, new Generator(3));
                Console.WriteLine($"timing {name} {step} ...");
                return Harness.Measure($"{name} {step}", () =>
                {
                    using var scope = NewDisposeScope();
                    optimizer.ZeroGrad();
                    var loss = objective.Loss(forward, batch);
                    loss.backward();
                    optimizer.Step();
                }, warmups: 1, repetitions: repetitions, itemsPerRun: 1);
            }
            var plain = Step("plain", Objectives.Supervised(head));
            table.AddRow(name, "plain", plain.MedianMs.ToString("F1"), "1.00x");
            entries.Add(Harness.Entry(plain, plain));
            foreach (var kind in Enum.GetValues<MaskPenaltyKind>())
            {
                var objective = new MaskPenaltyObjective(new MaskPenaltyOptions { Kind = kind }, Objectives.Supervised(head), head);
                var m = Step(kind.ToString(), objective);
                table.AddRow(name, kind.ToString(), m.MedianMs.ToString("F1"), Harness.FormatRatio(m.MedianMs / plain.MedianMs));
                entries.Add(Harness.Entry(m, plain));
            }
        }

        using (var cnn = new CnnNetwork(1, 48, 48, [16, 32], 3, 2, 1, 0, 1))
            Bench("CNN 1×48×48", cnn, new long[] { Batch, 48 * 48 }, null);
        var s4dOptions = new SequenceTrainer.Options { Channels = 1, ModelDimension = 64, NumberOfLayers = 2, DropoutRate = 0, Bidirectional = true };
        var backbone = SequenceBackbones.Create(s4dOptions);
        using (var s4d = new SequenceNetwork(1, 1, 2, new SequenceNetworkShape(64, 0, true), SequenceNormalization.LayerNorm, false, backbone))
            Bench("S4D H=64, 2 layers, L=256", s4d, new long[] { Batch, 256, 1 }, null);

        Console.WriteLine();
        Console.WriteLine($"One training step at batch {Batch}, median of {repetitions} runs; libtorch threads {get_num_threads()}:");
        table.Print(Console.Out);
        Console.WriteLine("ratio: the step's time over the plain step's on the same network and batch (the penalties' double backprop or second forward).");
        Console.WriteLine($"Whole run: {total.Elapsed.TotalSeconds:F0} s.");
        if (jsonPath is not null)
        {
            Harness.WriteJson(jsonPath, new BenchmarkReport
            {
                Benchmark = "masks",
                Machine = machine,
                Parameters = new() { ["batch"] = Batch, ["repetitions"] = repetitions, ["maskFraction"] = 0.5 },
                Baseline = "plain step of each network",
                Results = entries,
                Extra = new() { ["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 2) },
                Notes = notes,
            });
        }
        return 0;
    }
}
