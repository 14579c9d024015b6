"""The public, stable API of luna_lambda_tools, under the module paths the original documents
(`luna_lambda_tools.public.<module>`). Each module re-exports this runtime's implementation."""
