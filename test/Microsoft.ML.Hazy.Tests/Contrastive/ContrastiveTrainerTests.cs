using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.Hazy.Tests.Mlp;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Contrastive;

public sealed class ContrastiveTrainerTests
{
    private const int Size = 6;
    private const int Side = 8;

    private static ContrastiveTrainer.Options Small(ContrastiveTrainer.Options o, int seed = 7)
    {
        o.EmbeddingSize = Size;
        o.HiddenLayers = new[] { 16 };
        o.DecoderHiddenLayers = new[] { 16 };
        o.NumberOfEpochs = 5;
        o.BatchSize = 16;
        o.LearningRate = 1e-2;
        o.Seed = seed;
        return o;
    }

    private static float[][] Embeddings(IDataView scored, string column = "Embedding") => scored.GetColumn<float[]>(column).ToArray();

    public sealed class ImageRow
    {
        public string Class = "";

        [VectorType(Side * Side)]
        public float[] Features = Array.Empty<float>();
    }

    /// <summary>8×8 images: class "left" is brighter on the left half, "right" on the right half, plus noise.</summary>
    private static IDataView Images(MLContext ml, int rows, int seed)
    {
        var rand = new Random(seed);
        var data = Enumerable.Range(0, rows).Select(i =>
        {
            bool left = i % 2 == 0;
            var x = Enumerable.Range(0, Side * Side).Select(p => (float)(0.3 * rand.NextDouble() + ((p % Side < Side / 2) == left ? 0.6 : 0.1))).ToArray();
            return new ImageRow { Class = left ? "left" : "right", Features = x };
        }).ToArray();
        var view = ml.Data.LoadFromEnumerable(data);
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(ImageRow.Class)).Fit(view).Transform(view);
    }

    private static ContrastiveTrainer.Options Cnn(ContrastiveTrainer.Options o, int seed = 7)
    {
        Small(o, seed);
        o.Encoder = ContrastiveEncoder.Cnn;
        o.Height = Side;
        o.Width = Side;
        o.Filters = new[] { 4 };
        o.NumberOfEpochs = 2;
        return o;
    }

    [Test]
    public void SpreadEmbeddingsScoreThroughOnnxAsInTorchSharpAndALinearProbeFitsOnThem()
    {
        var ml = new MLContext(1);
        var rows = Blobs.Make(150, 1);
        var data = Blobs.Keyed(ml, rows);
        using var model = ml.Hazy().Contrastive(Small(ContrastiveTrainer.Options.Spread())).Fit(data);
        Assert.That(model.Kind, Is.EqualTo(PredictionKind.Embedding));
        var scored = model.Transform(data);
        Assert.That(((VectorDataViewType)scored.Schema["Embedding"].Type).Size, Is.EqualTo(Size));
        var onnx = Embeddings(scored);
        var torch = model.ScoreWithTorch(data);
        for (int i = 0; i < onnx.Length; i++)
        {
            Assert.That(onnx[i], Is.EqualTo(torch[i]).Within(1e-5), $"row {i}");
            Assert.That(Math.Sqrt(onnx[i].Sum(v => (double)v * v)), Is.EqualTo(1).Within(1e-5), $"norm of row {i}");
        }

        // A stock ML.NET trainer on the Embedding column separates the (well separated) blobs.
        var probe = ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy(featureColumnName: "Embedding").Fit(scored);
        var metrics = ml.MulticlassClassification.Evaluate(probe.Transform(scored));
        Assert.That(metrics.MicroAccuracy, Is.GreaterThan(0.9));
    }

    [Test]
    public void SaveLoadAndPredictionEngineGiveTheSameEmbeddings()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 4));
        var options = Small(ContrastiveTrainer.Options.SupCon());
        options.OutputColumnName = "Vec";
        using var model = ml.Hazy().Contrastive(options).Fit(data);
        var path = Path.Combine(Path.GetTempPath(), $"hazy-contrastive-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var loaded = new MLContext(5).Model.Load(path, out _);
            var before = Embeddings(model.Transform(data), "Vec");
            Assert.That(Embeddings(loaded.Transform(data), "Vec"), Is.EqualTo(before));
            var engine = ml.Model.CreatePredictionEngine<Blobs.Row, VecRow>(loaded);
            var first = Blobs.Make(60, 4)[0];
            Assert.That(engine.Predict(first).Vec, Is.EqualTo(before[0]).Within(1e-6));
        }
        finally
        {
            File.Delete(path);
        }
    }

    public sealed class VecRow
    {
        public float[] Vec = Array.Empty<float>();
    }

    [Test]
    public void CnnWithAugmentedViewsIsDeterministicPerSeed()
    {
        var ml = new MLContext(1);
        var data = Images(ml, 48, 2);
        float[][] Fit(int seed)
        {
            using var model = new MLContext(1).Hazy().Contrastive(Cnn(ContrastiveTrainer.Options.Spread(), seed)).Fit(data);
            var onnx = Embeddings(model.Transform(data));
            var torch = model.ScoreWithTorch(data);
            for (int i = 0; i < onnx.Length; i++)
                Assert.That(onnx[i], Is.EqualTo(torch[i]).Within(1e-5), $"row {i}");
            return onnx;
        }

        var first = Fit(3);
        Assert.That(Fit(3), Is.EqualTo(first));
        var other = Fit(4);
        Assert.That(other.Zip(first, (a, b) => a.Zip(b, (p, q) => Math.Abs(p - q)).Max()).Max(), Is.GreaterThan(1e-3));
    }

    [Test]
    public void AutoencoderExportsOnlyTheEncoder()
    {
        var ml = new MLContext(1);
        var data = Images(ml, 32, 5);
        using var model = ml.Hazy().Contrastive(Cnn(ContrastiveTrainer.Options.Autoencoder())).Fit(data);
        Assert.That(((VectorDataViewType)model.Transform(data).Schema["Embedding"].Type).Size, Is.EqualTo(Size));
        Assert.That(model.TrainingHistory.All(e => double.IsFinite(e.TrainLoss)));
        // Batch normalisation runs through the layer-by-layer forward: its statistics moved, once per training step
        // (32 rows, batch 16, 2 epochs, one view per step for the autoencoder).
        var norm = model.Network.modules().OfType<TorchSharp.Modules.BatchNorm2d>().Single();
        Assert.That(norm.num_batches_tracked!.item<long>(), Is.EqualTo(4));
        Assert.That(norm.running_mean!.abs().max().item<float>(), Is.GreaterThan(1e-4f));
    }

    [Test]
    public void ThanosConcatenatesBothEmbeddingsAndSurvivesSaveLoad()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 6));
        var spread = Small(ContrastiveTrainer.Options.Spread());
        var ae = Small(ContrastiveTrainer.Options.Autoencoder());
        ae.EmbeddingSize = 3;
        var estimator = ml.Hazy().Thanos(spread, ae);
        var shape = estimator.GetOutputSchema(Conformance.ConformanceHelpers.ShapeOf(data.Schema));
        Assert.That(shape.Any(c => c.Name == "Embedding"));
        var model = estimator.Fit(data);
        var scored = model.Transform(data);
        Assert.That(((VectorDataViewType)scored.Schema["Embedding"].Type).Size, Is.EqualTo(Size + 3));
        Assert.That(scored.Schema.GetColumnOrNull("Embedding.Spread"), Is.Null);
        var parts = model.OfType<HazyPredictionTransformer>().ToArray();
        var spreadPart = parts[0].ScoreWithTorch(data);
        var aePart = parts[1].ScoreWithTorch(data);
        var e = Embeddings(scored);
        for (int i = 0; i < e.Length; i++)
            Assert.That(e[i], Is.EqualTo(spreadPart[i].Concat(aePart[i]).ToArray()).Within(1e-5), $"row {i}");

        var path = Path.Combine(Path.GetTempPath(), $"hazy-thanos-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var loaded = new MLContext(5).Model.Load(path, out _);
            Assert.That(Embeddings(loaded.Transform(data)), Is.EqualTo(e));
        }
        finally
        {
            File.Delete(path);
            foreach (var p in parts)
                p.Dispose();
        }
    }

    [Test]
    public void BadOptionsAndShapesAreRejectedNamingThem()
    {
        var ml = new MLContext(1);
        var cnn = new ContrastiveTrainer.Options { Encoder = ContrastiveEncoder.Cnn };
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Contrastive(cnn))!.Message, Does.Contain("Height"));
        var data = Blobs.Keyed(ml, Blobs.Make(30, 1));
        var images = new ContrastiveTrainer.Options { Height = 3, Width = 3, NumberOfEpochs = 1 };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Contrastive(images).Fit(data));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("8").And.Contain("9"));
    }
}
