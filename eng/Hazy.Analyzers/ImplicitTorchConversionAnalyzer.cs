using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace Hazy.Analyzers;

/// <summary>
/// Reports the implicit user-defined conversions that make TorchSharp allocate native memory nobody owns:
/// a <c>TorchSharp.Scalar</c> from a number (<c>t * 2.0</c>, <c>t.add_(x, alpha: 0.5)</c>) and a
/// <c>torch.Tensor</c> from a number, an array or a scalar; and the TorchSharp 0.107 members that make such a
/// scalar inside (<c>a + b</c> passes an implicit alpha of 1, <c>x.square()</c> an implicit exponent of 2). The object's handle goes to libtorch while the
/// managed object is already unreachable, so a garbage collection on another thread can run its finalizer
/// and free it during the native call.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class ImplicitTorchConversionAnalyzer : DiagnosticAnalyzer
{
    /// <summary>The rule for implicit conversions to <c>TorchSharp.Scalar</c>.</summary>
    public static readonly DiagnosticDescriptor ImplicitScalar = new(
        id: "HAZY001",
        title: "Implicit conversion to TorchSharp.Scalar",
        messageFormat: "Implicit conversion of {0} to TorchSharp.Scalar creates a native object that only the finalizer frees; create it with ToScalar() and dispose it (using var)",
        category: "Reliability",
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: "A Scalar created by an implicit conversion is never disposed; its finalizer may free it while libtorch still reads it.");

    /// <summary>The rule for implicit conversions to <c>TorchSharp.torch.Tensor</c>.</summary>
    public static readonly DiagnosticDescriptor ImplicitTensor = new(
        id: "HAZY002",
        title: "Implicit conversion to TorchSharp.torch.Tensor",
        messageFormat: "Implicit conversion of {0} to TorchSharp.torch.Tensor creates a native tensor that nobody disposes; create it explicitly (torch.tensor) and dispose it (using var)",
        category: "Reliability",
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: "A Tensor created by an implicit conversion is never disposed; its finalizer may free it while libtorch still reads it.");

    /// <summary>The rule for TorchSharp members that create a <c>TorchSharp.Scalar</c> internally and never dispose it.</summary>
    public static readonly DiagnosticDescriptor InternalScalar = new(
        id: "HAZY003",
        title: "TorchSharp member creates an undisposed Scalar",
        messageFormat: "{0} creates a TorchSharp.Scalar internally that only the finalizer frees (TorchSharp 0.107); call the overload that takes every scalar, passing ones created with ToScalar() and disposed (using var)",
        category: "Reliability",
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        description: "These TorchSharp 0.107 members convert a number (often a default such as alpha = 1) to a Scalar implicitly and leave it to the finalizer.");

    // TorchSharp 0.107 members whose IL calls Scalar's implicit conversion and never disposes the result
    // (found by scanning TorchSharp.dll), keyed by containing type, name and parameter type names.
    // The Tensor operators with a number operand are reported as HAZY001 instead.
    private static readonly ImmutableHashSet<string> LeakingMembers = ImmutableHashSet.Create(
        "TorchSharp.torch.Tensor.add(Tensor)",
        "TorchSharp.torch.Tensor.add(Scalar)",
        "TorchSharp.torch.Tensor.add_(Tensor)",
        "TorchSharp.torch.Tensor.add_(Scalar)",
        "TorchSharp.torch.Tensor.addcdiv(Tensor,Tensor)",
        "TorchSharp.torch.Tensor.addcdiv_(Tensor,Tensor)",
        "TorchSharp.torch.Tensor.celu()",
        "TorchSharp.torch.Tensor.celu_()",
        "TorchSharp.torch.Tensor.elu(Double)",
        "TorchSharp.torch.Tensor.elu_(Double)",
        "TorchSharp.torch.Tensor.softplus(Double,Double)",
        "TorchSharp.torch.Tensor.square()",
        "TorchSharp.torch.Tensor.op_Addition(Tensor,Tensor)",
        "TorchSharp.torch.Tensor.op_Addition(Tensor,Scalar)",
        "TorchSharp.torch.Tensor.op_Addition(Scalar,Tensor)",
        "TorchSharp.torch.Tensor.op_Subtraction(Scalar,Tensor)",
        "TorchSharp.torch.add(Tensor,Tensor)",
        "TorchSharp.torch.add(Tensor,Scalar)",
        "TorchSharp.torch.add_(Tensor,Tensor)",
        "TorchSharp.torch.add_(Tensor,Scalar)",
        "TorchSharp.torch.square(Tensor)",
        "TorchSharp.torch.arange(Scalar,Nullable,Device,Boolean)",
        "TorchSharp.torch.arange(Scalar,Scalar,Nullable,Device,Boolean)",
        "TorchSharp.torch.normal(Double,Double,ReadOnlySpan,Nullable,Device,Boolean,Generator,String[])",
        "TorchSharp.torch.nn.functional.celu(Tensor,Double,Boolean)",
        "TorchSharp.torch.nn.functional.elu(Tensor,Double,Boolean)",
        "TorchSharp.torch.nn.functional.hardshrink(Tensor,Double)",
        "TorchSharp.torch.nn.functional.Hardshrink(Tensor,Double)",
        "TorchSharp.torch.nn.functional.hardtanh(Tensor,Double,Double,Boolean)",
        "TorchSharp.torch.nn.functional.Hardtanh(Tensor,Double,Double,Boolean)",
        "TorchSharp.torch.nn.functional.leaky_relu(Tensor,Double,Boolean)",
        "TorchSharp.torch.nn.functional.softplus(Tensor,Double,Double)",
        "TorchSharp.torch.nn.functional.softshrink(Tensor,Double)",
        "TorchSharp.torch.nn.functional.Softshrink(Tensor,Double)",
        "TorchSharp.torch.nn.functional.softsign(Tensor,Boolean)",
        "TorchSharp.torch.nn.functional.threshold(Tensor,Double,Double,Boolean)",
        "TorchSharp.torch.nn.functional.Threshold(Tensor,Double,Double,Boolean)",
        "TorchSharp.Modules.BatchNorm.forward(Tensor)",
        "TorchSharp.Modules.GaussianNLLLoss.forward(Tensor,Tensor,Tensor)");

    /// <inheritdoc/>
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(ImplicitScalar, ImplicitTensor, InternalScalar);

    /// <inheritdoc/>
    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var scalar = start.Compilation.GetTypeByMetadataName("TorchSharp.Scalar");
            var tensor = start.Compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
            if (scalar is null && tensor is null)
                return;
            start.RegisterOperationAction(c => AnalyzeConversion(c, scalar, tensor), OperationKind.Conversion);
            start.RegisterOperationAction(AnalyzeCall, OperationKind.Invocation, OperationKind.Binary, OperationKind.CompoundAssignment);
        });
    }

    private static void AnalyzeCall(OperationAnalysisContext context)
    {
        var method = context.Operation switch
        {
            IInvocationOperation invocation => invocation.TargetMethod,
            IBinaryOperation binary => binary.OperatorMethod,
            ICompoundAssignmentOperation assignment => assignment.OperatorMethod,
            _ => null,
        };
        if (method is null || method.ContainingNamespace?.ToDisplayString() is not ("TorchSharp" or "TorchSharp.Modules"))
            return;
        method = method.OriginalDefinition;
        if (method.MethodKind == MethodKind.UserDefinedOperator && method.ContainingType.Name == "Tensor"
            && method.Parameters.Length == 2 && method.Parameters.FirstOrDefault(p => IsNumber(p.Type)) is { } number)
        {
            // TorchSharp's Tensor-and-number operators convert the number to a Scalar they never dispose.
            var operand = context.Operation is IBinaryOperation b
                ? (number.Ordinal == 0 ? b.LeftOperand : b.RightOperand)
                : ((ICompoundAssignmentOperation)context.Operation).Value;
            var shown = number.Type.ToDisplayString(SymbolDisplayFormat.CSharpShortErrorMessageFormat);
            context.ReportDiagnostic(Diagnostic.Create(ImplicitScalar, operand.Syntax.GetLocation(), shown));
            return;
        }
        if (LeakingMembers.Contains(Key(method)))
            context.ReportDiagnostic(Diagnostic.Create(InternalScalar, context.Operation.Syntax.GetLocation(), method.ToDisplayString(SymbolDisplayFormat.CSharpShortErrorMessageFormat)));
    }

    private static bool IsNumber(ITypeSymbol type) => type.SpecialType is SpecialType.System_Double or SpecialType.System_Single
        or SpecialType.System_Int32 or SpecialType.System_Int64;

    private static string Key(IMethodSymbol method)
    {
        var parameters = method.Parameters.Select(p => p.Type is IArrayTypeSymbol array ? array.ElementType.Name + "[]" : p.Type.Name);
        return method.ContainingType.ToDisplayString() + "." + method.MetadataName + "(" + string.Join(",", parameters) + ")";
    }

    private static void AnalyzeConversion(OperationAnalysisContext context, INamedTypeSymbol? scalar, INamedTypeSymbol? tensor)
    {
        var conversion = (IConversionOperation)context.Operation;
        if (!conversion.IsImplicit || conversion.OperatorMethod is not { } op)
            return;
        DiagnosticDescriptor rule;
        if (scalar is not null && SymbolEqualityComparer.Default.Equals(op.ContainingType, scalar))
            rule = ImplicitScalar;
        else if (tensor is not null && SymbolEqualityComparer.Default.Equals(op.ContainingType, tensor)
            && SymbolEqualityComparer.Default.Equals(op.ReturnType, tensor))
            rule = ImplicitTensor;
        else
            return;
        if (IsOwnedByUsing(conversion))
            return;
        var source = conversion.Operand.Type?.ToDisplayString(SymbolDisplayFormat.CSharpShortErrorMessageFormat) ?? "a value";
        context.ReportDiagnostic(Diagnostic.Create(rule, conversion.Syntax.GetLocation(), source));
    }

    // `using Scalar two = 2.0;` converts implicitly but disposes what it creates.
    private static bool IsOwnedByUsing(IConversionOperation conversion)
    {
        if (conversion.Parent is not IVariableInitializerOperation { Parent: IVariableDeclaratorOperation { Parent: IVariableDeclarationOperation declaration } })
            return false;
        var owner = declaration.Parent is IVariableDeclarationGroupOperation group ? group.Parent : declaration.Parent;
        return owner is IUsingOperation or IUsingDeclarationOperation;
    }
}
