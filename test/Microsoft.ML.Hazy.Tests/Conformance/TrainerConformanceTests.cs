using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Conformance;

/// <summary>
/// The checks every Hazy trainer must pass, after ML.NET's TestEstimatorCore. A trainer's test fixture
/// derives from this class and says how to build the trainer and its data; every [Test] here then runs
/// against it.
/// </summary>
public abstract class TrainerConformanceTests
{
    /// <summary>The task, which decides the output columns checked.</summary>
    protected abstract PredictionKind Kind { get; }

    /// <summary>The trainer under test, built from <paramref name="ml"/> (seed and device come from it).</summary>
    protected abstract IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml);

    /// <summary>Training data with the label already in the form the trainer expects.</summary>
    protected abstract IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1);

    protected virtual string FeatureColumn => "Features";

    protected virtual string LabelColumn => "Label";

    /// <summary>The column the model's output is read from: <c>Score</c>, or the embedding column of an embedding trainer.</summary>
    protected virtual string ScoreColumn => Kind == PredictionKind.Embedding ? "Embedding" : "Score";

    private HazyPredictionTransformer Train(int seed = 7, IDataView? data = null)
    {
        var ml = new MLContext(seed);
        return CreateTrainer(ml).Fit(data ?? CreateTrainingData(ml));
    }

    [Test]
    public void SchemaBeforeFitEqualsFittedSchema()
    {
        var ml = new MLContext(1);
        var data = CreateTrainingData(ml);
        var trainer = CreateTrainer(ml);
        var predicted = trainer.GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema));
        using var model = trainer.Fit(data);
        var actual = model.GetOutputSchema(data.Schema);
        var expectedNames = predicted.Select(c => c.Name).ToArray();
        Assert.That(actual.Where(c => !c.IsHidden).Select(c => c.Name), Is.EquivalentTo(expectedNames));
        foreach (var p in predicted)
        {
            var a = actual[p.Name];
            Assert.That(a.Type is VectorDataViewType, Is.EqualTo(p.Kind != SchemaShape.Column.VectorKind.Scalar), $"vector-ness of '{p.Name}'");
            Assert.That(a.Type is KeyDataViewType || ItemOf(a.Type) is KeyDataViewType, Is.EqualTo(p.IsKey), $"key-ness of '{p.Name}'");
            Assert.That(ItemOf(a.Type).RawType, Is.EqualTo(p.ItemType.RawType), $"item type of '{p.Name}'");
        }
        foreach (var name in ExpectedOutputs())
            Assert.That(actual.GetColumnOrNull(name), Is.Not.Null, $"output column '{name}'");
        if (Kind == PredictionKind.MulticlassClassification)
        {
            var classes = ((KeyDataViewType)data.Schema[LabelColumn].Type).Count;
            Assert.That(((VectorDataViewType)actual["Score"].Type).Size, Is.EqualTo(classes), "Score has one slot per class");
            Assert.That(((KeyDataViewType)actual["PredictedLabel"].Type).Count, Is.EqualTo(classes), "PredictedLabel has the label's cardinality");
        }
        else if (Kind == PredictionKind.Embedding)
        {
            Assert.That(actual[ScoreColumn].Type, Is.InstanceOf<VectorDataViewType>().And.Property(nameof(VectorDataViewType.Size)).GreaterThan(0),
                "the embedding is a known-size vector");
            Assert.That(((VectorDataViewType)actual[ScoreColumn].Type).ItemType, Is.EqualTo(NumberDataViewType.Single));
        }
        else
        {
            Assert.That(actual["Score"].Type, Is.EqualTo(NumberDataViewType.Single), "Score is a scalar");
        }
    }

    [Test]
    public void SaveLoadInFreshContextGivesIdenticalScores()
    {
        var ml = new MLContext(3);
        var data = CreateTrainingData(ml, 80, seed: 5);
        using var model = Train();
        var path = Path.Combine(Path.GetTempPath(), $"hazy-conformance-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var fresh = new MLContext(99);
            var loaded = fresh.Model.Load(path, out var loadedSchema);
            Assert.That(loadedSchema.Select(c => c.Name), Is.EqualTo(data.Schema.Select(c => c.Name)));
            foreach (var t in ConformanceHelpers.Flatten(loaded))
                Assert.That(t.GetType().Assembly, Is.Not.EqualTo(typeof(HazyPredictionTransformer).Assembly), $"loaded transformer {t.GetType()}");
            ConformanceHelpers.AssertSameOutputs(model.Transform(data), loaded.Transform(data), ExpectedOutputs());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void PredictionEngineEqualsBatchTransform()
    {
        var ml = new MLContext(3);
        var data = CreateTrainingData(ml, 40, seed: 11);
        using var model = Train();
        var batch = ConformanceHelpers.ReadScores(model.Transform(data), ScoreColumn);
        var mapper = ((ITransformer)model).GetRowToRowMapper(data.Schema);
        var score = mapper.OutputSchema[ScoreColumn];
        using var cursor = data.GetRowCursor(data.Schema);
        using var row = mapper.GetRow(cursor, new[] { score });
        int i = 0;
        var single = ConformanceHelpers.ScoreReader(row, score);
        while (cursor.MoveNext())
        {
            Assert.That(single(), Is.EqualTo(batch[i]).Within(0), $"row {i}");
            i++;
        }
        Assert.That(i, Is.EqualTo(batch.Length));
    }

    [Test]
    public void SameSeedGivesIdenticalScoresAndOtherSeedDiffers()
    {
        var data = CreateTrainingData(new MLContext(1), 80, seed: 13);
        using var a = Train(seed: 21);
        using var b = Train(seed: 21);
        using var c = Train(seed: 22);
        var sa = ConformanceHelpers.ReadScores(a.Transform(data), ScoreColumn);
        var sb = ConformanceHelpers.ReadScores(b.Transform(data), ScoreColumn);
        var sc = ConformanceHelpers.ReadScores(c.Transform(data), ScoreColumn);
        Assert.That(sb, Is.EqualTo(sa));
        Assert.That(sc, Is.Not.EqualTo(sa));
    }

    [Test]
    public void OnnxRuntimeScoresEqualTorchSharp()
    {
        var data = CreateTrainingData(new MLContext(1), 64, seed: 17);
        using var model = Train();
        var onnx = ConformanceHelpers.ReadScores(model.Transform(data), ScoreColumn);
        var torch = model.ScoreWithTorch(data);
        Assert.That(onnx.Length, Is.EqualTo(torch.Length));
        for (int i = 0; i < onnx.Length; i++)
            ConformanceHelpers.AssertClose(onnx[i], torch[i], 1e-4, $"row {i}");

        // The batched export, run directly in ONNX Runtime, agrees too.
        using var stream = new MemoryStream();
        model.SaveAsOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        var features = data.GetColumn<float[]>(FeatureColumn).ToArray();
        int d = features[0].Length;
        var input = new DenseTensorOf(features, d);
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(FeatureColumn, input.Tensor) });
        var scores = results.First(r => r.Name == ScoreColumn).AsTensor<float>();
        for (int i = 0; i < features.Length; i++)
        {
            var row = Enumerable.Range(0, (int)scores.Dimensions[1]).Select(j => scores[i, j]).ToArray();
            ConformanceHelpers.AssertClose(row, torch[i], 1e-4, $"batched row {i}");
        }
    }

    [Test]
    public void MissingFeatureColumnThrowsNamingIt()
    {
        var ml = new MLContext(1);
        var data = ml.Transforms.CopyColumns("Other", FeatureColumn).Append(ml.Transforms.DropColumns(FeatureColumn))
            .Fit(CreateTrainingData(ml)).Transform(CreateTrainingData(ml));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => CreateTrainer(ml).Fit(data));
        Assert.That(ex!.Message, Does.Contain($"'{FeatureColumn}'").And.Contain("not found").And.Contain("expected"));
        var ex2 = Assert.Throws<ArgumentOutOfRangeException>(() => CreateTrainer(ml).GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema)));
        Assert.That(ex2!.Message, Does.Contain($"'{FeatureColumn}'"));
    }

    [Test]
    public void WrongFeatureTypeThrowsNamingExpectedAndActual()
    {
        var ml = new MLContext(1);
        var data = ml.Transforms.Conversion.ConvertType(FeatureColumn, FeatureColumn, DataKind.Double).Fit(CreateTrainingData(ml)).Transform(CreateTrainingData(ml));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => CreateTrainer(ml).Fit(data));
        Assert.That(ex!.Message, Does.Contain($"'{FeatureColumn}'").And.Contain("Double").And.Contain("expected"));
    }

    [Test]
    public void WrongVectorSizeAtScoringThrowsNamingSizes()
    {
        using var model = Train();
        var ml = new MLContext(1);
        var data = CreateTrainingData(ml, 10);
        int d = data.GetColumn<float[]>(FeatureColumn).First().Length;
        var shorter = ml.Data.LoadFromEnumerable(
            Enumerable.Range(0, 3).Select(_ => new ShortRow { Features = new float[d - 1] }),
            ConformanceHelpers.VectorSchema<ShortRow>(d - 1));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Transform(shorter));
        Assert.That(ex!.Message, Does.Contain($"'{FeatureColumn}'").And.Contain($"{d - 1}").And.Contain($"{d}"));
    }

    [Test]
    public void NonFiniteFeaturesThrowNamingColumnAndRow()
    {
        var ml = new MLContext(1);
        var data = CreateTrainingData(ml, 50);
        // 0 / 0 is NaN in every slot of every row.
        var poisoned = ml.Transforms.Expression(FeatureColumn, "x => x / (x - x)", FeatureColumn).Fit(data).Transform(data);
        var ex = Assert.Throws<InvalidOperationException>(() => CreateTrainer(ml).Fit(poisoned));
        Assert.That(ex!.Message, Does.Contain($"'{FeatureColumn}'").And.Contain("row").And.Contain("NaN"));
    }

    [Test]
    public void EmptyDataThrows()
    {
        var ml = new MLContext(1);
        var empty = ml.Data.SkipRows(CreateTrainingData(ml), 1_000_000);
        var ex = Assert.Throws<InvalidOperationException>(() => CreateTrainer(ml).Fit(empty));
        Assert.That(ex!.Message, Does.Contain("empty"));
    }

    [Test]
    public void SingleClassLabelThrows()
    {
        if (Kind == PredictionKind.Regression)
            Assert.Ignore("Regression has no classes.");
        var ml = new MLContext(1);
        var data = CreateSingleClassData(ml);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => CreateTrainer(ml).Fit(data));
        Assert.That(ex!.Message, Does.Contain($"'{LabelColumn}'").And.Contain("at least 2 classes"));
    }

    /// <summary>Training data whose label has one class only.</summary>
    protected abstract IDataView CreateSingleClassData(MLContext ml);

    private static DataViewType ItemOf(DataViewType t) => t is VectorDataViewType v ? v.ItemType : t;

    private string[] ExpectedOutputs() => Kind switch
    {
        PredictionKind.Regression => new[] { "Score" },
        PredictionKind.Embedding => new[] { ScoreColumn },
        PredictionKind.BinaryClassification => new[] { "Score", "Probability", "PredictedLabel" },
        _ => new[] { "Score", "PredictedLabel" },
    };

    private sealed class ShortRow
    {
        public float[] Features = Array.Empty<float>();
    }

    private sealed class DenseTensorOf
    {
        public DenseTensorOf(float[][] rows, int d)
        {
            var flat = rows.SelectMany(r => r).ToArray();
            Tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(flat, new[] { rows.Length, d });
        }

        public Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float> Tensor { get; }
    }
}

internal static class ConformanceHelpers
{
    /// <summary>ML.NET's SchemaShape.Create is internal; tests reach it as ML.NET's own tests do.</summary>
    public static SchemaShape ShapeOf(DataViewSchema schema) =>
        (SchemaShape)typeof(SchemaShape).GetMethod("Create", BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic, new[] { typeof(DataViewSchema) })!
            .Invoke(null, new object[] { schema })!;

    public static IEnumerable<ITransformer> Flatten(ITransformer t)
    {
        if (t is IEnumerable<ITransformer> chain)
        {
            foreach (var inner in chain)
                foreach (var x in Flatten(inner))
                    yield return x;
        }
        else
        {
            yield return t;
        }
    }

    public static SchemaDefinition VectorSchema<T>(int size)
    {
        var def = SchemaDefinition.Create(typeof(T));
        def["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, size);
        return def;
    }

    /// <summary>The Score column (or <paramref name="column"/>) of every row as a float array (one element for scalar scores).</summary>
    public static float[][] ReadScores(IDataView scored, string column = "Score")
    {
        var score = scored.Schema[column];
        using var cursor = scored.GetRowCursor(new[] { score });
        var read = ScoreReader(cursor, score);
        var rows = new List<float[]>();
        while (cursor.MoveNext())
            rows.Add(read());
        return rows.ToArray();
    }

    public static Func<float[]> ScoreReader(DataViewRow row, DataViewSchema.Column score)
    {
        if (score.Type is VectorDataViewType)
        {
            var g = row.GetGetter<VBuffer<float>>(score);
            var buffer = default(VBuffer<float>);
            return () =>
            {
                g(ref buffer);
                return buffer.DenseValues().ToArray();
            };
        }
        var s = row.GetGetter<float>(score);
        return () =>
        {
            float v = 0;
            s(ref v);
            return new[] { v };
        };
    }

    // Exact: values are compared as round-trip ("R") strings, since a saved and loaded model runs the same graph.
    public static void AssertSameOutputs(IDataView expected, IDataView actual, IEnumerable<string> columns)
    {
        foreach (var name in columns)
        {
            var e = expected.Schema[name];
            var a = actual.Schema[name];
            Assert.That(a.Type.ToString(), Is.EqualTo(e.Type.ToString()), $"type of '{name}'");
            Assert.That(Preview(actual, name), Is.EqualTo(Preview(expected, name)), $"values of '{name}'");
        }
    }

    private static string[] Preview(IDataView data, string column)
    {
        var preview = data.Preview(maxRows: 1000);
        return preview.RowView.Select(r => Format(r.Values.First(kv => kv.Key == column).Value)).ToArray();
    }

    private static string Format(object value) => value switch
    {
        VBuffer<float> v => string.Join(",", v.DenseValues().Select(x => x.ToString("R"))),
        float f => f.ToString("R"),
        _ => value?.ToString() ?? "",
    };

    public static void AssertClose(float[] actual, float[] expected, double relTol, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        double scale = Math.Max(1e-6, expected.Max(Math.Abs));
        for (int j = 0; j < actual.Length; j++)
            Assert.That(Math.Abs(actual[j] - expected[j]) / scale, Is.LessThanOrEqualTo(relTol), $"{what}, element {j}: {actual[j]} vs {expected[j]}");
    }
}
