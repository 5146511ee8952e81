using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Monarch;

/// <summary>The switch from Monarch to dense layers keeps one learning-rate schedule and does not make the loss jump.</summary>
public sealed class MonarchReverseSparsificationTests
{
    private const int Rows = 240, BatchSize = 16, Epochs = 16, StepsPerEpoch = Rows / BatchSize, SwitchEpoch = Epochs / 2;
    private const double PeakLearningRate = 3e-2;

    private readonly List<TrainingStep> _steps = new();

    [OneTimeSetUp]
    public void TrainOnce()
    {
        // Regression with label noise: at the peak learning rate the loss settles on a visibly higher floor than at the
        // annealed one, which is what a schedule restarted at the switch would show.
        var ml = new MLContext(1);
        var noise = new Random(5);
        var rows = Blobs.Make(Rows, 1).Select(r => { r.Target += (float)(noise.NextDouble() * 2 - 1); return r; }).ToArray();
        var data = Blobs.WithLabel(ml, rows, nameof(Blobs.Row.Target));
        var options = new MlpTrainer.Options
        {
            HiddenLayers = new[] { 32, 32 },
            MonarchBlocks = 4,
            DensifyAfterFraction = 0.5,
            DropoutRate = 0,
            NumberOfEpochs = Epochs,
            BatchSize = BatchSize,
            LearningRate = PeakLearningRate,
            Schedule = LearningRateSchedule.Cosine,
            WarmupFraction = 0,
            Seed = 7,
            StepObserver = s => _steps.Add(s),
        };
        using var model = ml.Regression.Trainers.HazyMlp(options).Fit(data);
        Assert.That(model.Network.modules().OfType<Layers.Monarch.MonarchLinear>(), Is.Empty);
    }

    [Test]
    public void LearningRateFollowsOneCosineAcrossTheSwitch()
    {
        const int total = Epochs * StepsPerEpoch;
        Assert.That(_steps, Has.Count.EqualTo(total));
        for (int i = 0; i < total; i++)
        {
            double expected = 0.5 * (1 + Math.Cos(Math.PI * i / total));
            Assert.That(_steps[i].LearningRateFactor, Is.EqualTo(expected).Within(1e-12), $"step {i}");
        }
        Assert.That(_steps.Select(s => s.Step), Is.EqualTo(Enumerable.Range(0, total).Select(i => (long)i)));
    }

    [Test]
    public void LossDoesNotJumpAtTheSwitch()
    {
        // Windows of one epoch each: every row is seen once in both, so batch composition does not enter the comparison.
        double EpochMean(int epoch) => _steps.Skip((epoch - 1) * StepsPerEpoch).Take(StepsPerEpoch).Average(s => s.Loss);
        double jump = EpochMean(SwitchEpoch + 1) / EpochMean(SwitchEpoch);
        // The margin is the largest epoch-to-epoch rise the Monarch phase itself shows once its loss has levelled off
        // (its second half), and at least 1: the switch may not disturb training more than the sparse phase's own noise.
        double margin = 1;
        for (int e = SwitchEpoch / 2 + 1; e < SwitchEpoch; e++)
            margin = Math.Max(margin, EpochMean(e + 1) / EpochMean(e));
        Assert.That(jump, Is.LessThanOrEqualTo(margin),
            string.Join(", ", Enumerable.Range(1, Epochs).Select(e => $"{EpochMean(e):G3}")));
    }

    [Test]
    public void CarriedStateContinuesTheOptimizerWhereShapesMatch()
    {
        using var generator = new Generator(3);
        using var before = nn.Sequential(("x", nn.Linear(3, 4)), ("y", nn.Linear(4, 2)));
        var options = new MlpTrainer.Options { LearningRate = 0.01, WeightDecay = 0.01 };
        using var previous = TrainingLoop.CreateOptimizer(before, options);
        for (int i = 0; i < 3; i++)
        {
            foreach (var p in before.parameters())
                p.grad = randn(p.shape, generator: generator);
            previous.Step();
        }

        // "x" changes shape as a densified layer does; "y" keeps its shape and values.
        using var after = nn.Sequential(("x", nn.Linear(3, 5)), ("y", nn.Linear(4, 2)));
        using var fresh = nn.Sequential(("x", nn.Linear(3, 5)), ("y", nn.Linear(4, 2)));
        using (no_grad())
        {
            foreach (var (name, p) in after.named_parameters())
            {
                var source = name.StartsWith("y.") ? before.named_parameters().Single(q => q.name == name).parameter : p;
                p.copy_(source);
                fresh.named_parameters().Single(q => q.name == name).parameter.copy_(source);
            }
        }
        using var next = TrainingLoop.CreateOptimizer(after, options);
        using var restarted = TrainingLoop.CreateOptimizer(fresh, options);
        Assert.That(next.CarryStateFrom(previous, before, after), Is.EqualTo(new[] { "y.weight", "y.bias" }));

        var gradients = after.named_parameters().ToDictionary(p => p.name, p => randn(p.parameter.shape, generator: generator));
        foreach (var (module, optimizer) in new[] { (before, previous), (after, next), (fresh, restarted) })
        {
            foreach (var (name, p) in module.named_parameters())
                p.grad = gradients[name].shape.SequenceEqual(p.shape) ? gradients[name].clone() : zeros_like(p);
            optimizer.Step();
        }
        Tensor Parameter(nn.Module m, string name) => m.named_parameters().Single(p => p.name == name).parameter;
        foreach (var name in new[] { "y.weight", "y.bias" })
        {
            // The carried parameter moves exactly as the old optimizer moves it, not as a fresh one would.
            Assert.That(MonarchLinearTests.MaxAbsDiff(Parameter(after, name), Parameter(before, name)), Is.EqualTo(0), name);
            Assert.That(MonarchLinearTests.MaxAbsDiff(Parameter(after, name), Parameter(fresh, name)), Is.GreaterThan(1e-6), name);
        }
        foreach (var name in new[] { "x.weight", "x.bias" })
            Assert.That(MonarchLinearTests.MaxAbsDiff(Parameter(after, name), Parameter(fresh, name)), Is.EqualTo(0), name);
        foreach (var g in gradients.Values)
            g.Dispose();
    }
}
