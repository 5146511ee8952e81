using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Embedding;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Tests.Sequence;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Embedding;

public sealed class EmbeddingTrainerTests
{
    private const int Size = 4;

    private static EmbeddingTrainer.Options Small(bool normalize = true) => new()
    {
        EmbeddingSize = Size,
        HiddenLayers = new[] { 16 },
        Normalize = normalize,
        NumberOfEpochs = 6,
        BatchSize = 16,
        LearningRate = 1e-2,
        Seed = 7,
    };

    private static float[][] Embeddings(IDataView scored, string column = "Embedding") => scored.GetColumn<float[]>(column).ToArray();

    [Test]
    public void FitGivesUnitNormEmbeddingsThatSeparateTheClasses()
    {
        var ml = new MLContext(1);
        var rows = Blobs.Make(150, 1);
        var data = Blobs.Keyed(ml, rows);
        using var model = ml.Hazy().Embedding(Small()).Fit(data);
        Assert.That(model.Kind, Is.EqualTo(PredictionKind.Embedding));
        var scored = model.Transform(data);
        var column = scored.Schema["Embedding"];
        Assert.That(((VectorDataViewType)column.Type).Size, Is.EqualTo(Size));
        Assert.That(scored.Schema.GetColumnOrNull("Score"), Is.Null, "an embedding model has no Score column");
        var e = Embeddings(scored);
        foreach (var v in e)
            Assert.That(Math.Sqrt(v.Sum(x => (double)x * x)), Is.EqualTo(1.0).Within(1e-5));

        // Trained through the classifier, a row's embedding is closer (cosine) to its own class's mean direction than to the others'.
        var classes = rows.Select(r => r.Class).ToArray();
        var names = classes.Distinct().ToArray();
        var means = names.ToDictionary(n => n, n => Enumerable.Range(0, Size).Select(j => e.Where((_, i) => classes[i] == n).Average(v => v[j])).ToArray());
        int nearestOwn = Enumerable.Range(0, e.Length).Count(i => names.OrderByDescending(n => Dot(e[i], means[n]) / Norm(means[n])).First() == classes[i]);
        Assert.That(nearestOwn, Is.GreaterThan(0.9 * e.Length), "rows whose nearest class direction is their own");
    }

    [Test]
    public void WithoutNormalisationNormsVary()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 2));
        using var model = ml.Hazy().Embedding(Small(normalize: false)).Fit(data);
        var norms = Embeddings(model.Transform(data)).Select(Norm).ToArray();
        Assert.That(norms.Max() - norms.Min(), Is.GreaterThan(1e-2));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void OnnxEqualsTorchSharpOnTheSameRows(bool normalize)
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 3));
        using var model = ml.Hazy().Embedding(Small(normalize)).Fit(data);
        var onnx = Embeddings(model.Transform(data));
        var torch = model.ScoreWithTorch(data);
        Assert.That(onnx.Length, Is.EqualTo(torch.Length));
        for (int i = 0; i < onnx.Length; i++)
            Assert.That(onnx[i], Is.EqualTo(torch[i]).Within(1e-5), $"row {i}");

        // The batched graph names its output after the column.
        using var stream = new MemoryStream();
        model.SaveAsOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        var features = data.GetColumn<float[]>("Features").ToArray();
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(features.SelectMany(f => f).ToArray(), new[] { features.Length, features[0].Length });
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("Features", input) });
        var batched = results.Single(r => r.Name == "Embedding").AsTensor<float>();
        for (int i = 0; i < features.Length; i++)
            Assert.That(Enumerable.Range(0, Size).Select(j => batched[i, j]).ToArray(), Is.EqualTo(torch[i]).Within(1e-5), $"batched row {i}");
    }

    [Test]
    public void SaveLoadGivesIdenticalEmbeddingsAndOutputSchemaMatches()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 4));
        var trainer = ml.Hazy().Embedding(labelColumnName: "Label", embeddingSize: Size, outputColumnName: "Vec");
        var shape = trainer.GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema));
        var vec = shape.Single(c => c.Name == "Vec");
        Assert.That(vec.Kind, Is.EqualTo(SchemaShape.Column.VectorKind.Vector));
        Assert.That(vec.ItemType, Is.EqualTo(NumberDataViewType.Single));

        var options = Small();
        options.OutputColumnName = "Vec";
        using var model = ml.Hazy().Embedding(options).Fit(data);
        var path = Path.Combine(Path.GetTempPath(), $"hazy-embedding-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var loaded = new MLContext(5).Model.Load(path, out _);
            var before = Embeddings(model.Transform(data), "Vec");
            var after = Embeddings(loaded.Transform(data), "Vec");
            Assert.That(after, Is.EqualTo(before));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ScalarLabelIsRejectedNamingTheColumn()
    {
        var ml = new MLContext(1);
        var data = Blobs.WithLabel(ml, Blobs.Make(30, 1), nameof(Blobs.Row.Target));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Embedding(Small()).GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema)));
        Assert.That(ex!.Message, Does.Contain("'Label'").And.Contain("key"));
    }

    private static double Dot(float[] a, float[] b) => a.Zip(b, (x, y) => (double)x * y).Sum();

    private static double Norm(float[] v) => Math.Sqrt(Dot(v, v));
}

/// <summary>The trainer conformance suite on the embedding head: the MLP embedding trainer.</summary>
[TestFixture]
public sealed class EmbeddingConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Embedding;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) => ml.Hazy().Embedding(new EmbeddingTrainer.Options
    {
        EmbeddingSize = 4,
        HiddenLayers = new[] { 16 },
        NumberOfEpochs = 3,
        BatchSize = 16,
        LearningRate = 1e-2,
    });

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Blobs.Keyed(ml, Blobs.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Blobs.Keyed(ml, Blobs.Make(30, 1, classes: 1));
}

/// <summary>The trainer conformance suite on the contrastive trainer (spread loss, MLP encoder, identical views).</summary>
[TestFixture]
public sealed class ContrastiveConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Embedding;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var options = Microsoft.ML.Hazy.Contrastive.ContrastiveTrainer.Options.Spread();
        options.EmbeddingSize = 4;
        options.HiddenLayers = new[] { 16 };
        options.NumberOfEpochs = 3;
        options.BatchSize = 16;
        options.LearningRate = 1e-2;
        return ml.Hazy().Contrastive(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Blobs.Keyed(ml, Blobs.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Blobs.Keyed(ml, Blobs.Make(30, 1, classes: 1));
}

/// <summary>The trainer conformance suite on the contrastive trainer with a sequence encoder (S4D, crop/mask/scale/jitter views).</summary>
[TestFixture]
public sealed class SequenceContrastiveConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Embedding;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var sequence = Microsoft.ML.Hazy.Contrastive.ContrastiveTrainer.Options.SequenceViews(Waves.Channels);
        sequence.ModelDimension = 8;
        sequence.NumberOfLayers = 1;
        sequence.S4D = new Microsoft.ML.Hazy.Sequence.S4D.S4DOptions { StateSize = 8 };
        var options = Microsoft.ML.Hazy.Contrastive.ContrastiveTrainer.Options.Spread();
        options.Encoder = Microsoft.ML.Hazy.Contrastive.ContrastiveEncoder.Sequence;
        options.Sequence = sequence;
        options.Augmentation = null;
        options.EmbeddingSize = 4;
        options.NumberOfEpochs = 3;
        options.BatchSize = 32;
        options.LearningRate = 1e-2;
        return ml.Hazy().Contrastive(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Waves.Keyed(ml, Waves.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Waves.Keyed(ml, Waves.Make(30, 1, classes: 1));
}
