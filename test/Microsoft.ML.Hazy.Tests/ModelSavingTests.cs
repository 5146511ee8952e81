using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests;

/// <summary><c>mlContext.Model.SaveAtomically</c>: a failed save never damages the model file already there.</summary>
public sealed class ModelSavingTests
{
    private static MLContext _ml = null!;
    private static IDataView _data = null!;
    private static HazyPredictionTransformer _model = null!;
    private string _folder = null!;

    [OneTimeSetUp]
    public void Train()
    {
        _ml = new MLContext(3);
        _data = Blobs.Keyed(_ml, Blobs.Make(60, 1));
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        options.LayerNorm = false;
        options.Activation = MlpActivation.Relu;
        _model = _ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(_data);
    }

    [OneTimeTearDown]
    public void DisposeModel() => _model.Dispose();

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("hazy-save-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    /// <summary>The model followed by an attribution transformer, whose Save throws NotSupportedException.</summary>
    private static ITransformer Unsaveable()
    {
        var scored = _model.Transform(_data);
        var attribution = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.InputXGradient, AttributionTarget.PredictedLabel).Fit(scored);
        return new TransformerChain<ITransformer>(_model, attribution);
    }

    [Test]
    public void FailedSaveLeavesTheExistingModelByteForByteAndNoTemporaryFile()
    {
        var path = Path.Combine(_folder, "model.zip");
        _ml.Model.SaveAtomically(_model, _data.Schema, path);
        var good = File.ReadAllBytes(path);
        Assert.That(good, Is.Not.Empty);

        var ex = Assert.Throws<NotSupportedException>(() => _ml.Model.SaveAtomically(Unsaveable(), _data.Schema, path));
        Assert.That(ex!.Message, Does.Contain("AttributionTransformer"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(good));
        Assert.That(Directory.GetFiles(_folder).Select(Path.GetFileName), Is.EqualTo(new[] { "model.zip" }));
    }

    [Test]
    public void FailedSaveCreatesNoFileWhereNoneWas()
    {
        var path = Path.Combine(_folder, "model.zip");
        Assert.Throws<NotSupportedException>(() => _ml.Model.SaveAtomically(Unsaveable(), _data.Schema, path));
        Assert.That(Directory.GetFiles(_folder), Is.Empty);
    }

    [Test]
    public void SuccessfulSaveReplacesTheFileAndTheModelLoads()
    {
        var path = Path.Combine(_folder, "model.zip");
        File.WriteAllText(path, "not a model");
        _ml.Model.SaveAtomically(_model, _data.Schema, path);
        Assert.That(Directory.GetFiles(_folder).Select(Path.GetFileName), Is.EqualTo(new[] { "model.zip" }));

        var loaded = new MLContext(5).Model.Load(path, out var schema);
        Assert.That(schema.Select(c => c.Name), Is.EqualTo(_data.Schema.Select(c => c.Name)));
        var expected = _model.Transform(_data).GetColumn<float[]>("Score").ToArray();
        var actual = loaded.Transform(_data).GetColumn<float[]>("Score").ToArray();
        Assert.That(actual, Is.EqualTo(expected));
    }

    [Test]
    public void SaveAsOnnxToAPathReplacesTheFileWithTheGraph()
    {
        var path = Path.Combine(_folder, "model.onnx");
        File.WriteAllText(path, "old");
        _model.SaveAsOnnx(path);
        using var stream = new MemoryStream();
        _model.SaveAsOnnx(stream);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(stream.ToArray()));
        Assert.That(Directory.GetFiles(_folder).Select(Path.GetFileName), Is.EqualTo(new[] { "model.onnx" }));
    }
}
