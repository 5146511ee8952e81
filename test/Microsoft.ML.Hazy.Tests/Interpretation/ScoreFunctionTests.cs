using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>TransformerScoreFunction and TorchScoreFunction: scores equal the models' own formulas.</summary>
public class ScoreFunctionTests
{
    [Test]
    public void TransformerScoreFunctionReturnsTheSdcaLinearFunction()
    {
        var (ml, model, w, b, x) = SdcaFixture.Train();
        var score = new TransformerScoreFunction(model, "Features", SdcaFixture.Dimensions);
        Assert.That(score.OutputCount, Is.EqualTo(1));
        var s = score.Score(x, 5);
        Assert.That(s, Has.Length.EqualTo(5));
        for (int r = 0; r < 5; r++)
        {
            double expected = b + Enumerable.Range(0, w.Length).Sum(j => (double)w[j] * x[r * w.Length + j]);
            Assert.That(s[r], Is.EqualTo(expected).Within(1e-5));
        }
    }

    private sealed class ClassRow
    {
        [VectorType(3)]
        public float[] Features { get; set; } = [];

        public uint Class { get; set; }
    }

    [Test]
    public void TransformerScoreFunctionReadsAVectorScoreInRowOrder()
    {
        var ml = new MLContext(1);
        var rng = new Random(2);
        var rows = Enumerable.Range(0, 300).Select(i =>
        {
            uint c = (uint)(i % 4);
            return new ClassRow { Class = c, Features = Enumerable.Range(0, 3).Select(j => (float)(rng.NextDouble() + (c == j ? 2 : 0) + (c == 3 ? -1 : 0))).ToArray() };
        }).ToArray();
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", nameof(ClassRow.Class)).Fit(data).Transform(data);
        var model = ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(new Microsoft.ML.Trainers.SdcaMaximumEntropyMulticlassTrainer.Options { NumberOfThreads = 1 }).Fit(keyed);
        var score = new TransformerScoreFunction(model, "Features", 3);
        Assert.That(score.OutputCount, Is.EqualTo(4));

        // The same rows through ML.NET's own Transform.
        var reference = model.Transform(keyed).GetColumn<VBuffer<float>>("Score").Take(50).Select(v => v.DenseValues().ToArray()).ToArray();
        var s = score.Score(rows.Take(50).SelectMany(r => r.Features).ToArray(), 50);
        for (int r = 0; r < 50; r++)
            Assert.That(s.AsSpan(r * 4, 4).ToArray(), Is.EqualTo(reference[r]).Within(1e-6));

        // A chain that also needs the raw label column cannot score features alone, and says so.
        var chain = ml.Transforms.Conversion.MapValueToKey("Label", nameof(ClassRow.Class)).Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()).Fit(data);
        var needsClass = Assert.Throws<ArgumentException>(() => new TransformerScoreFunction(chain, "Features", 3))!;
        Assert.That(needsClass.Message, Does.Contain("'Features'").And.Contain("Class"));
    }

    [Test]
    public void TransformerScoreFunctionRejectsBadInput()
    {
        var (ml, model, _, _, x) = SdcaFixture.Train(50);
        var missing = Assert.Throws<ArgumentException>(() => new TransformerScoreFunction(model, "Features", SdcaFixture.Dimensions, "Probability"))!;
        Assert.That(missing.Message, Does.Contain("'Probability'").And.Contain("'Score'"));
        var score = new TransformerScoreFunction(model, "Features", SdcaFixture.Dimensions);
        var wrong = Assert.Throws<ArgumentException>(() => score.Score(x.AsSpan(0, 12), 2))!;
        Assert.That(wrong.Message, Does.Contain("12").And.Contain("16"));
        Assert.Catch(() => new TransformerScoreFunction(model, "Features", 5));
    }

    [Test]
    public void TorchScoreFunctionMatchesTheLinearLayerAcrossBatches()
    {
        manual_seed(4);
        var linear = nn.Linear(6, 3);
        linear.train();
        var score = new TorchScoreFunction(linear, 6, batchSize: 2);
        Assert.That(score.OutputCount, Is.EqualTo(3));
        var rng = new Random(1);
        var x = Enumerable.Range(0, 5 * 6).Select(_ => (float)rng.NextDouble()).ToArray();
        var s = score.Score(x, 5);
        var w = linear.weight!.data<float>().ToArray();
        var b = linear.bias!.data<float>().ToArray();
        for (int r = 0; r < 5; r++)
            for (int o = 0; o < 3; o++)
                Assert.That(s[r * 3 + o], Is.EqualTo(b[o] + Enumerable.Range(0, 6).Sum(j => w[o * 6 + j] * x[r * 6 + j])).Within(1e-5));
        Assert.That(linear.training, Is.True, "the training flag is restored");
        Assert.That(is_grad_enabled(), Is.True);
        Assert.Throws<ArgumentException>(() => score.Score(x, 4));
    }
}
