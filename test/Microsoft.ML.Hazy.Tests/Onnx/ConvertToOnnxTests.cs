using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Onnx;

/// <summary>
/// ML.NET's <c>mlContext.Model.ConvertToOnnx</c> cannot export an <c>OnnxTransformer</c>, so it cannot export a Hazy model;
/// <see cref="HazyPredictionTransformer.SaveAsOnnx(Stream)"/> is the export. These tests pin that the converter refuses
/// rather than writing a graph without the network.
/// </summary>
public sealed class ConvertToOnnxTests
{
    [TestCase("multiclass")]
    [TestCase("binary")]
    [TestCase("regression")]
    public void ConvertToOnnxRefusesAHazyModelAndWritesNothing(string task)
    {
        var ml = new MLContext(3);
        var rows = Blobs.Make(60, 1);
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        var (data, trainer) = task switch
        {
            "multiclass" => (Blobs.Keyed(ml, rows), (IEstimator<HazyPredictionTransformer>)ml.MulticlassClassification.Trainers.HazyMlp(options)),
            "binary" => (Blobs.WithLabel(ml, rows, nameof(Blobs.Row.IsPositive)), ml.BinaryClassification.Trainers.HazyMlp(options)),
            _ => (Blobs.WithLabel(ml, rows, nameof(Blobs.Row.Target)), ml.Regression.Trainers.HazyMlp(options)),
        };
        using var model = trainer.Fit(data);

        using var stream = new MemoryStream();
        Assert.Throws<InvalidOperationException>(() => ml.Model.ConvertToOnnx(model, data, stream));
        Assert.Throws<InvalidOperationException>(() => ml.Model.ConvertToOnnx(model, data, stream, "Score"));
        Assert.That(stream.Length, Is.Zero);

        model.SaveAsOnnx(stream);
        Assert.That(stream.Length, Is.GreaterThan(0));
    }
}
