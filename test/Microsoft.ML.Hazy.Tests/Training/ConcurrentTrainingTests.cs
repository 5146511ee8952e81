using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Tests.Sequence;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>
/// Each training run draws its initial weights and dropout masks from its own generator: two Fit calls at once, or one
/// beside code that draws from libtorch's global generator, give exactly the models they give alone.
/// </summary>
[NonParallelizable]
public sealed class ConcurrentTrainingTests
{
    private static float[][] TrainMlp()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.DropoutRate = 0.3;
        options.Seed = 11;
        var data = Blobs.Keyed(ml, Blobs.Make(160, 1));
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);
        return ConformanceHelpers.ReadScores(model.Transform(data));
    }

    private static float[][] TrainS4D()
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions();
        options.DropoutRate = 0.2;
        options.NumberOfEpochs = 2;
        options.Seed = 13;
        var data = Waves.Keyed(ml, Waves.Make(96, 1));
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(data);
        return ConformanceHelpers.ReadScores(model.Transform(data));
    }

    [Test]
    public void TwoFitsAtOnceGiveTheModelsTheyGiveAlone()
    {
        var mlpAlone = TrainMlp();
        var s4dAlone = TrainS4D();
        using var start = new Barrier(2);
        var mlp = Task.Run(() => { start.SignalAndWait(); return TrainMlp(); });
        var s4d = Task.Run(() => { start.SignalAndWait(); return TrainS4D(); });
        Assert.That(mlp.Result, Is.EqualTo(mlpAlone), "MLP trained beside an S4D");
        Assert.That(s4d.Result, Is.EqualTo(s4dAlone), "S4D trained beside an MLP");
    }

    [Test]
    public void GlobalGeneratorDrawsElsewhereDoNotChangeTheModel()
    {
        var alone = TrainMlp();
        using var stop = new CancellationTokenSource();
        var noise = Task.Run(() =>
        {
            long draws = 0;
            while (!stop.IsCancellationRequested)
            {
                using var r = rand(64);
                manual_seed(draws++);
            }
            return draws;
        });
        var beside = TrainMlp();
        stop.Cancel();
        Assert.That(noise.Result, Is.GreaterThan(0));
        Assert.That(beside, Is.EqualTo(alone));
    }
}
