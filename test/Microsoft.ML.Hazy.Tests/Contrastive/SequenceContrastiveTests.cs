using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Tests.Sequence;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Contrastive;

/// <summary>Contrastive training of the sequence encoders (S4D, Transformer) on variable-length series, and the time-mask view.</summary>
public sealed class SequenceContrastiveTests
{
    private const int Size = 6;

    private static ContrastiveTrainer.Options Options(SequenceBackbone backbone, int epochs)
    {
        var sequence = ContrastiveTrainer.Options.SequenceViews(Waves.Channels, maximumLength: 24, backbone);
        sequence.ModelDimension = 16;
        sequence.NumberOfLayers = 1;
        sequence.S4D = new S4DOptions { StateSize = 8 };
        sequence.Transformer = new Microsoft.ML.Hazy.Sequence.Attention.TransformerOptions { NumberOfHeads = 2 };
        var o = ContrastiveTrainer.Options.Spread();
        o.Encoder = ContrastiveEncoder.Sequence;
        o.Sequence = sequence;
        o.Augmentation = null;
        o.EmbeddingSize = Size;
        o.NumberOfEpochs = epochs;
        o.BatchSize = 32;
        o.LearningRate = 1e-2;
        o.Seed = 5;
        return o;
    }

    public sealed class EmbeddingOutput
    {
        public float[] Embedding = Array.Empty<float>();
    }

    [Test]
    public void ATimeMaskZeroesOneContiguousSpanOfTheValidStepsInEveryChannel()
    {
        using var scope = NewDisposeScope();
        const int steps = 20, channels = 2;
        var x = ones(new long[] { 5, steps, channels });
        var valid = new long[] { 20, 10, 7, 1, 20 };
        var lengths = tensor(valid);
        var mask = SequenceNetwork.Mask(lengths, steps, ScalarType.Float32)!;
        x = x.mul(mask);
        using var augmenter = new SequenceAugmenter(new SequenceAugmentation(1, 0, 0, TimeMask: 0.3)) { Generator = new Generator(3) };
        augmenter.train();
        var (y, n) = augmenter.Augment(x, lengths);
        Assert.That(n!.data<long>().ToArray(), Is.EqualTo(valid), "a time mask keeps every row's length");
        var values = y.data<float>().ToArray();
        for (int b = 0; b < valid.Length; b++)
        {
            var zeroed = Enumerable.Range(0, (int)valid[b]).Where(t => values[(b * steps + t) * channels] == 0f).ToArray();
            Assert.That(zeroed.Length, Is.EqualTo((int)Math.Round(0.3 * valid[b])), $"row {b}: round(0.3·{valid[b]}) masked steps");
            if (zeroed.Length > 0)
                Assert.That(zeroed[^1] - zeroed[0] + 1, Is.EqualTo(zeroed.Length), $"row {b}: the masked steps are contiguous");
            for (int t = 0; t < steps; t++)
                Assert.That(values[(b * steps + t) * channels + 1], Is.EqualTo(values[(b * steps + t) * channels]), $"row {b}, step {t}: both channels masked alike");
            for (int t = (int)valid[b]; t < steps; t++)
                Assert.That(values[(b * steps + t) * channels], Is.EqualTo(0f), $"row {b}, step {t}: padding stays 0");
        }

        using var again = new SequenceAugmenter(new SequenceAugmentation(1, 0, 0, TimeMask: 0.3)) { Generator = new Generator(3) };
        again.train();
        Assert.That(again.Augment(x, lengths).Features.data<float>().ToArray(), Is.EqualTo(values), "same seed, same spans");
        augmenter.eval();
        Assert.That(augmenter.Augment(x, lengths).Features.data<float>().ToArray(), Is.EqualTo(x.data<float>().ToArray()), "evaluation masks nothing");
    }

    [TestCase(SequenceBackbone.S4D)]
    [TestCase(SequenceBackbone.Transformer)]
    public void SequenceEncoderEmbeddingsScoreThroughOnnxAsInTorchSharpAndSurviveSaveLoad(SequenceBackbone backbone)
    {
        var ml = new MLContext(1);
        var train = Waves.Keyed(ml, Waves.MakeVariable(120, 1, maxLength: 24));
        using var model = ml.Hazy().Contrastive(Options(backbone, epochs: 4)).Fit(train);
        Assert.That(model.Kind, Is.EqualTo(PredictionKind.Embedding));

        var test = Waves.Keyed(ml, Waves.MakeVariable(30, 2, maxLength: 24));
        var scored = model.Transform(test);
        var column = scored.Schema["Embedding"];
        Assert.That(((VectorDataViewType)column.Type).Size, Is.EqualTo(Size));
        var onnx = scored.GetColumn<float[]>("Embedding").ToArray();
        // ONNX scores each row alone; TorchSharp pads the rows of a batch to the longest: equality is also padding invariance.
        var torch = model.ScoreWithTorch(test);
        for (int i = 0; i < onnx.Length; i++)
        {
            Assert.That(onnx[i], Is.EqualTo(torch[i]).Within(1e-4), $"row {i}");
            Assert.That(Math.Sqrt(onnx[i].Sum(v => (double)v * v)), Is.EqualTo(1).Within(1e-5), $"norm of row {i}");
        }

        using var stream = new MemoryStream();
        ml.Model.Save(model, train.Schema, stream);
        stream.Position = 0;
        var loaded = ml.Model.Load(stream, out _);
        var reloaded = loaded.Transform(test).GetColumn<float[]>("Embedding").ToArray();
        for (int i = 0; i < onnx.Length; i++)
            Assert.That(reloaded[i], Is.EqualTo(onnx[i]).Within(1e-6), $"reloaded row {i}");
        var rows = ml.Data.CreateEnumerable<Waves.VariableRow>(test, reuseRowObject: false).ToArray();
        var engine = ml.Model.CreatePredictionEngine<Waves.VariableRow, EmbeddingOutput>(loaded);
        for (int i = 0; i < 5; i++)
            Assert.That(engine.Predict(rows[i]).Embedding, Is.EqualTo(onnx[i]).Within(1e-5), $"prediction engine, row {i}");
    }

    [Test]
    public void AStockLinearProbeSeparatesTheClassesOnTheS4DEmbedding()
    {
        var ml = new MLContext(1);
        var train = Waves.Keyed(ml, Waves.MakeVariable(150, 3, maxLength: 24));
        using var model = ml.Hazy().Contrastive(Options(SequenceBackbone.S4D, epochs: 25)).Fit(train);
        var probe = ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy(featureColumnName: "Embedding")
            .Fit(model.Transform(train));
        var test = Waves.Keyed(ml, Waves.MakeVariable(90, 4, maxLength: 24));
        var metrics = ml.MulticlassClassification.Evaluate(probe.Transform(model.Transform(test)));
        // Three frequencies of random phase and length: chance is 1/3.
        Assert.That(metrics.MacroAccuracy, Is.GreaterThan(0.8), $"linear probe on the contrastive S4D embedding: {metrics.MacroAccuracy:F3}");
    }

    [Test]
    public void SequenceEncoderOptionsAreCheckedNamingTheOption()
    {
        var ml = new MLContext(1);
        var missing = Options(SequenceBackbone.S4D, 1);
        missing.Sequence = null;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Contrastive(missing))!.Message, Does.Contain("Sequence"));

        var reconstruct = Options(SequenceBackbone.S4D, 1);
        reconstruct.ReconstructionWeight = 1;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Contrastive(reconstruct))!.Message, Does.Contain("ReconstructionWeight"));

        var badMask = Options(SequenceBackbone.S4D, 1);
        badMask.Sequence!.TimeMaskFraction = 1;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Contrastive(badMask))!.Message, Does.Contain("TimeMaskFraction"));
    }
}
